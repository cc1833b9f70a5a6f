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
            let reply = try ControlConnection(control).call(.stats, as: StatsReply.self)
            if json { return try reply.printJSON() }
            var table = TextTable([.init("port"), .init("kind"), .init("state"), .init("rx_packets", .right),
                                   .init("rx_bytes", .right), .init("tx_packets", .right), .init("tx_bytes", .right),
                                   .init("drops")])
            for p in reply.ports {
                let t = p.traffic
                let drops = t.drops.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
                table.append([p.name, p.kind, p.state, String(t.rxPackets), String(t.rxBytes), String(t.txPackets),
                              String(t.txBytes), drops])
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
