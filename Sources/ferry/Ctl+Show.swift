import ArgumentParser
import Foundation

extension Ctl {
    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the ports, the forwarding database or the counters.",
            discussion: "Example: ferry ctl show ports",
            subcommands: [Ports.self, FDB.self, Stats.self])
    }
}

extension Ctl.Show {
    struct Ports: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show every port: kind, state, VLAN mode, queues, spec.",
            discussion: """
                The vlan column is "access N" (one VLAN, untagged) or "trunk N,M" (802.1Q tagged).
                Example: ferry ctl show ports --json
                """)

        @OptionGroup var connection: ControlOptions

        @Flag(help: "Print JSON instead of a table.")
        var json = false

        func run() throws {
            let reply = try ControlClient.call(connection.control, ["cmd": "show", "what": "ports"])
            if json { return reply.printRaw() }
            guard let ports = reply.object["ports"] as? [[String: Any]] else { throw reply.unexpected() }
            Ctl.Show.portsTable(ports).print()
        }
    }

    /// Ports as `show ports` prints them (and `port add`/`port del` print theirs).
    static func portsTable(_ ports: [[String: Any]]) -> TextTable {
        var table = TextTable([.init("port"), .init("index", .right), .init("kind"), .init("state"), .init("vlan"),
                               .init("queues", .right), .init("spec")])
        for p in ports {
            table.append([p["name"], p["index"], p["kind"], p["state"], p["vlan"], p["queues"], p["spec"]]
                .map(Cell.text))
        }
        return table
    }

    struct FDB: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "fdb",
            abstract: "Show the forwarding database: which port each MAC is on, per VLAN.",
            discussion: """
                type is "learned" (from a frame's source address; age is the seconds since
                the last one, and the entry goes after the aging time) or "static" (added
                with `ferry ctl fdb add`; never ages, never moves).
                Example: ferry ctl show fdb --vlan 10 --port vm0
                """)

        @OptionGroup var connection: ControlOptions

        @Flag(help: "Print JSON instead of a table.")
        var json = false

        @Option(help: "Only entries in this VLAN.")
        var vlan: Int?

        @Option(help: "Only entries on the port of this name.")
        var port: String?

        func run() throws {
            let reply = try ControlClient.call(connection.control, ["cmd": "show", "what": "fdb"])
            guard let entries = reply.object["fdb"] as? [[String: Any]] else { throw reply.unexpected() }
            let shown = entries.filter { e in
                (vlan.map { e["vlan"] as? Int == $0 } ?? true) && (port.map { e["port"] as? String == $0 } ?? true)
            }
            if json {
                if vlan == nil && port == nil { return reply.printRaw() }
                var filtered = reply.object
                filtered["fdb"] = shown
                let data = try JSONSerialization.data(withJSONObject: filtered, options: [.sortedKeys])
                return print(String(decoding: data, as: UTF8.self))
            }
            var table = TextTable([.init("port"), .init("vlan", .right), .init("mac"), .init("type"),
                                   .init("age", .right)])
            for e in shown {
                let isStatic = e["static"] as? Bool ?? false
                table.append([Cell.text(e["port"]), Cell.text(e["vlan"]), Cell.text(e["mac"]),
                              isStatic ? "static" : "learned", isStatic ? "-" : Cell.text(e["age"])])
            }
            table.print()
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show per-port and per-queue counters (the same as `ferry ctl stats`).",
            discussion: "Example: ferry ctl show stats --json")

        @OptionGroup var connection: ControlOptions

        @Flag(help: "Print JSON instead of a table.")
        var json = false

        func run() throws {
            try Ctl.Stats.show(control: connection.control, json: json)
        }
    }
}
