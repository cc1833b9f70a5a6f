import ArgumentParser
import Foundation
import Glibc
import Platform

struct Ctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Talk to a running Ferry over its control socket.",
        subcommands: [Stats.self])

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show per-port and per-queue counters.",
            discussion: "Example: ferry ctl stats --json")

        @Option(help: "Control socket path.")
        var control: String = Defaults.controlSocket

        @Flag(help: "Print JSON instead of a table.")
        var json = false

        func run() throws {
            let reply = try ControlClient.request(control, ["cmd": "stats"])
            if json {
                print(String(decoding: reply, as: UTF8.self))
                return
            }
            guard let obj = try JSONSerialization.jsonObject(with: reply) as? [String: Any],
                  let ports = obj["ports"] as? [[String: Any]] else {
                throw ValidationError("unexpected reply: \(String(decoding: reply, as: UTF8.self))")
            }
            let header = ["port", "kind", "state", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "drops"]
            var rows = [header]
            for p in ports {
                let drops = (p["drops"] as? [String: Any] ?? [:]).sorted { $0.key < $1.key }
                    .map { "\($0.key)=\($0.value)" }.joined(separator: ",")
                rows.append([p["name"], p["kind"], p["state"], p["rx_packets"], p["rx_bytes"], p["tx_packets"],
                             p["tx_bytes"]].map { "\($0 ?? "")" } + [drops.isEmpty ? "-" : drops])
            }
            let widths = (0..<header.count).map { c in rows.map { $0[c].count }.max() ?? 0 }
            for r in rows {
                print(r.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }
                    .joined(separator: "  "))
            }
        }
    }
}

enum ControlClient {
    static func request(_ path: String, _ object: [String: Any]) throws -> Data {
        let raw: Int32
        do { raw = try UnixSocket.connect(path: path).release() } catch {
            throw ValidationError("cannot reach Ferry at \(path): \(error)")
        }
        let fd = FileDescriptor(owning: raw)
        var data = try JSONSerialization.data(withJSONObject: object)
        data.append(10)
        try UnixSocket.send(fd.rawValue, bytes: [UInt8](data))
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
