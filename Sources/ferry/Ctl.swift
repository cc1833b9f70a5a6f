import ArgumentParser
import Foundation
import Glibc
import Platform

struct Ctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Talk to a running Ferry over its control socket.",
        discussion: """
            Tables for people, --json for programs (the control socket's reply as it
            came). An error from Ferry is printed on stderr and the exit status is 1;
            when Ferry cannot be reached, 69.
            Example: ferry ctl show fdb --vlan 10
            """,
        subcommands: [Show.self, FDB.self, PortCommand.self, Stats.self, Capture.self])

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show per-port and per-queue counters (the same as `ferry ctl show stats`).",
            discussion: "Example: ferry ctl stats --json")

        @OptionGroup var connection: ControlOptions

        @Flag(help: "Print JSON instead of a table.")
        var json = false

        func run() throws {
            try Self.show(control: connection.control, json: json)
        }

        static func show(control: String, json: Bool) throws {
            let reply = try ControlClient.call(control, ["cmd": "stats"])
            if json { return reply.printRaw() }
            guard let ports = reply.object["ports"] as? [[String: Any]] else { throw reply.unexpected() }
            var table = TextTable([.init("port"), .init("kind"), .init("state"), .init("rx_packets", .right),
                                   .init("rx_bytes", .right), .init("tx_packets", .right), .init("tx_bytes", .right),
                                   .init("drops")])
            for p in ports {
                let drops = (p["drops"] as? [String: Any] ?? [:]).sorted { $0.key < $1.key }
                    .map { "\($0.key)=\($0.value)" }.joined(separator: ",")
                table.append([p["name"], p["kind"], p["state"], p["rx_packets"], p["rx_bytes"], p["tx_packets"],
                              p["tx_bytes"]].map(Cell.text) + [drops])
            }
            table.print()
        }
    }
}

/// Where to reach Ferry; every `ctl` command takes it.
struct ControlOptions: ParsableArguments {
    @Option(help: "Control socket path ($FERRY_CONTROL sets the default).")
    var control: String = Defaults.controlSocket
}

/// What `ctl` reports and exits 1 for: Ferry unreachable, or its error reply.
/// ArgumentParser prints the description on stderr.
struct CtlError: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) { self.description = description }
}

/// A cell's text from a JSON value ("" for none, which the table prints as "-").
enum Cell {
    static func text(_ value: Any?) -> String {
        switch value {
        case nil, is NSNull: ""
        case let s as String: s
        case let n as NSNumber: n.stringValue
        case let v?: "\(v)"
        }
    }
}

/// One reply: the line as Ferry sent it, and parsed.
struct ControlReply {
    let raw: Data
    let object: [String: Any]

    func printRaw() { print(String(decoding: raw, as: UTF8.self)) }

    func unexpected() -> CtlError { CtlError("unexpected reply: \(String(decoding: raw, as: UTF8.self))") }
}

enum ControlClient {
    /// Sends one request and returns the reply; an `{"error":...}` reply is thrown.
    static func call(_ path: String, _ request: [String: Any]) throws -> ControlReply {
        let raw = try self.request(path, request)
        guard let object = (try? JSONSerialization.jsonObject(with: raw)) as? [String: Any] else {
            if raw.isEmpty { throw CtlError("Ferry at \(path) closed the connection without a reply") }
            throw CtlError("reply is not a JSON object: \(String(decoding: raw, as: UTF8.self))")
        }
        if let error = object["error"] { throw CtlError(Cell.text(error)) }
        return ControlReply(raw: raw, object: object)
    }

    /// Connects and sends one request; the caller reads the reply.
    static func send(_ path: String, _ object: [String: Any]) throws -> FileDescriptor {
        let raw: Int32
        do { raw = try UnixSocket.connect(path: path).release() } catch {
            // Its own status (docs/OPERATIONS.md): not running is not the same as refusing.
            FileHandle.standardError.write(Data("Error: cannot reach Ferry at \(path): \(error)\n".utf8))
            throw ExitStatus.unavailable
        }
        let fd = FileDescriptor(owning: raw)
        var data = try JSONSerialization.data(withJSONObject: object)
        data.append(10)
        try UnixSocket.send(fd.rawValue, bytes: [UInt8](data))
        return fd
    }

    static func request(_ path: String, _ object: [String: Any]) throws -> Data {
        let fd = try send(path, object)
        var reply = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !reply.contains(10) {
            let n = buffer.withUnsafeMutableBytes { read(fd.rawValue, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            reply.append(contentsOf: buffer[0..<n])
        }
        if let nl = reply.firstIndex(of: 10) { reply = reply[..<nl] }
        return reply
    }
}
