import ArgumentParser
import ControlProtocol
import Foundation
import Glibc
import Platform

extension Ctl {
    struct Capture: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Capture a port's frames to a pcap file (or stdout) that tcpdump and Wireshark read.",
            discussion: """
                Frames are as on the port's wire: rx as the port gave them to Ferry, tx as Ferry
                handed them to the port (a trunk's with their 802.1Q tags). Runs until --count
                frames were written, Ctrl-C, or the port goes away. Forwarding never waits for a
                capture: frames it could not keep up with are counted (ferry_capture_dropped_total).
                Example: ferry ctl capture vm0 --count 10 -w - | tcpdump -n -r -
                """)

        @OptionGroup var connection: ControlOptions

        @Argument(help: "The port's name (see `ferry ctl show ports`).")
        var port: String

        @Option(help: "rx (frames from the port), tx (frames to it) or both.")
        var direction: String = "both"

        @Option(help: "Stop after this many frames.")
        var count: Int?

        @Option(help: "Bytes kept of each frame (1-65535).")
        var snaplen: Int = 65535

        @Option(name: .customShort("w"), help: ArgumentHelp("The pcap file to write; - for stdout.", valueName: "file"))
        var file: String

        func validate() throws {
            guard CaptureDirection(rawValue: direction) != nil else {
                throw ValidationError("--direction must be rx, tx or both")
            }
            if let count, count < 1 { throw ValidationError("--count must be at least 1") }
            let snapLengths = ControlProtocol.snapLengths
            guard snapLengths.contains(snaplen) else {
                throw ValidationError("--snaplen must be \(snapLengths.lowerBound)...\(snapLengths.upperBound)")
            }
        }

        func run() throws {
            // A reader that quits (`| head`, tcpdump -c) must end us with a clean
            // exit, not a signal: EPIPE is handled below.
            signal(SIGPIPE, SIG_IGN)
            let control = try ControlConnection(connection.control)
            let parameters = CaptureParameters(port: port, direction: CaptureDirection(rawValue: direction) ?? .both,
                                               count: count, snapLength: snaplen)
            let id = try control.send(.capture(parameters))
            let socket = control.socket.rawValue
            let opened: FileDescriptor?
            if file == "-" {
                opened = nil
            } else {
                let raw = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                guard raw >= 0 else { throw CtlError("cannot write \(file): \(String(cString: strerror(errno)))") }
                opened = FileDescriptor(owning: raw)
            }
            // The file, if one was named, closes with `opened` when the capture is over.
            let output = file == "-" ? STDOUT_FILENO : opened.rawValueOrNegative
            var stream = PcapStreamCounter()
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            var first = true
            while true {
                let n = DescriptorIO.read(socket, into: &buffer)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                // A refusal is one JSON line; a pcap stream starts with its magic number, never '{'.
                if first && buffer[0] == UInt8(ascii: "{") {
                    _ = try control.reply(to: id, as: OKReply.self, startingWith: buffer[0..<n])
                    throw CtlError("Ferry answered a capture with JSON, not a pcap stream")
                }
                first = false
                stream.consume(buffer[0..<n])
                if !DescriptorIO.writeAll(output, buffer[0..<n]) {
                    if errno == EPIPE { return }
                    throw CtlError("cannot write \(file): \(String(cString: strerror(errno)))")
                }
            }
            if first { throw CtlError("Ferry at \(connection.control) closed the connection without a reply") }
            FileHandle.standardError.write("\(stream.records) frames captured\n".data(using: .utf8)!)
        }
    }
}

/// Counts the records of a pcap stream as it passes, for the closing summary.
struct PcapStreamCounter {
    private(set) var records = 0
    /// Bytes to pass over before the next record header: the file header, then each record's frame.
    private var skip = 24
    /// A record header gathered so far (it may straddle two reads).
    private var header: [UInt8] = []

    mutating func consume(_ bytes: ArraySlice<UInt8>) {
        var i = bytes.startIndex
        while i < bytes.endIndex {
            if skip > 0 {
                let passed = min(skip, bytes.endIndex - i)
                i += passed
                skip -= passed
                continue
            }
            let take = min(16 - header.count, bytes.endIndex - i)
            header += bytes[i..<i + take]
            i += take
            guard header.count == 16 else { continue }
            // incl_len, the captured length, at offset 8 (little-endian: Ferry writes it so).
            skip = Int(header[8]) | Int(header[9]) << 8 | Int(header[10]) << 16 | Int(header[11]) << 24
            records += 1
            header = []
        }
    }
}
