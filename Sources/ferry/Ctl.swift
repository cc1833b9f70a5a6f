import ArgumentParser
import ControlProtocol

struct Ctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Talk to a running Ferry over its control socket.",
        discussion: """
            Tables for people, --json for programs (the control socket's reply, without
            the request id). An error from Ferry is printed on stderr and the exit status is 1;
            when Ferry cannot be reached, 69.
            Example: ferry ctl show fdb --vlan 10
            """,
        subcommands: [Show.self, FDB.self, PortCommand.self, Stats.self, Top.self, Capture.self])

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show per-port counters and rates, or per-queue counters (the same as `ferry ctl show stats`).",
            discussion: """
                Counts are since Ferry started or since the last --clear (one mark for every
                client; /metrics keeps counting from the start). Rates (per second: frames, bits
                of the frames as switched, drops) are over the last second Ferry sampled;
                "-" for a port added less than a second ago. 1.5k is 1,500, 2.0M 2,000,000.
                Example: ferry ctl stats --queues
                """)

        @OptionGroup var connection: ControlOptions

        @Flag(help: "Print JSON instead of a table.")
        var json = false

        @Flag(help: "One row per queue instead of per port.")
        var queues = false

        @Flag(help: "Count from now on: later stats show what was counted since (Prometheus /metrics unchanged).")
        var clear = false

        func validate() throws {
            if clear && (json || queues) { throw ValidationError("--clear prints nothing; give it alone") }
        }

        func run() throws {
            if clear {
                _ = try ControlConnection(connection.control).call(.statsClear, as: OKReply.self)
                return
            }
            try Self.show(control: connection.control, json: json, queues: queues)
        }

        static func show(control: String, json: Bool, queues: Bool = false) throws {
            let reply = try ControlConnection(control).call(.stats, as: StatsReply.self)
            if json { return try reply.printJSON() }
            (queues ? queueTable(reply) : portTable(reply)).print()
        }

        static func portTable(_ reply: StatsReply) -> TextTable {
            var table = TextTable([.init("port"), .init("kind"), .init("state"), .init("rx_packets", .right),
                                   .init("rx_bytes", .right), .init("tx_packets", .right), .init("tx_bytes", .right),
                                   .init("rx_pps", .right), .init("rx_bps", .right), .init("tx_pps", .right),
                                   .init("tx_bps", .right), .init("drops_pps", .right), .init("drops")])
            for p in reply.ports {
                let t = p.traffic
                table.append([p.name, p.kind, p.state, String(t.rxPackets), String(t.rxBytes), String(t.txPackets),
                              String(t.txBytes)] + RateText.cells(p.rates) + [Self.names(t.drops)])
            }
            return table
        }

        /// The per-queue counters the JSON reply has always carried, for people.
        static func queueTable(_ reply: StatsReply) -> TextTable {
            var table = TextTable([.init("port"), .init("queue", .right), .init("rx_packets", .right),
                                   .init("rx_bytes", .right), .init("tx_packets", .right), .init("tx_bytes", .right),
                                   .init("drops"), .init("offloads")])
            for p in reply.ports {
                for q in p.queues {
                    let t = q.traffic
                    table.append([p.name, String(q.queue), String(t.rxPackets), String(t.rxBytes), String(t.txPackets),
                                  String(t.txBytes), Self.names(t.drops), Self.names(t.offloads ?? [:])])
                }
            }
            return table
        }

        /// `reason=count,...` sorted by name; empty (printed "-") when nothing was counted.
        static func names(_ counts: [String: UInt64]) -> String {
            counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
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
