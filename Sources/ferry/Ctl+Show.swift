import ArgumentParser
import ControlProtocol

extension Ctl {
    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the ports, the forwarding database, the counters or the remote VTEPs.",
            discussion: "Example: ferry ctl show ports",
            subcommands: [Ports.self, FDB.self, Stats.self, VTEPs.self])
    }
}

extension Ctl.Show {
    struct Ports: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show every port: kind, state, VLAN mode, queues, spec.",
            discussion: """
                The vlan column is "access N" (one VLAN, untagged) or "trunk N,M" (802.1Q tagged),
                "trunk N,M native N" when the trunk carries one of them untagged.
                Example: ferry ctl show ports --json
                """)

        @OptionGroup var connection: ControlOptions

        @Flag(help: "Print JSON instead of a table.")
        var json = false

        func run() throws {
            let reply = try ControlConnection(connection.control).call(.show(.ports), as: PortsReply.self)
            if json { return try reply.printJSON() }
            Ctl.Show.portsTable(reply.ports).print()
        }
    }

    /// Ports as `show ports` prints them (and `port add`/`port del` print theirs).
    static func portsTable(_ ports: [PortInfo]) -> TextTable {
        var table = TextTable([.init("port"), .init("index", .right), .init("kind"), .init("state"), .init("vlan"),
                               .init("queues", .right), .init("spec")])
        for p in ports {
            table.append([p.name, String(p.index), p.kind, p.state, p.vlan, String(p.queues), p.spec])
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
                with `ferry ctl fdb add`; never ages, never moves) or "evpn" (a remote MAC
                from BGP EVPN on a vxlan port with evpn=: never ages, moves only when the MAC
                shows up on a local port). On a vxlan port the vtep column names the remote
                VTEP the MAC lives behind.
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
            var reply = try ControlConnection(connection.control).call(.show(.fdb), as: FDBReply.self)
            reply.fdb.removeAll { e in (vlan.map { e.vlan != $0 } ?? false) || (port.map { e.port != $0 } ?? false) }
            if json { return try reply.printJSON() }
            // The vtep column only where a vxlan port has entries: other tables stay as they were.
            let tunnels = reply.fdb.contains { $0.vtep != nil }
            var table = TextTable([.init("port"), .init("vlan", .right), .init("mac"), .init("type"),
                                   .init("age", .right)] + (tunnels ? [.init("vtep")] : []))
            for e in reply.fdb {
                table.append([e.port, String(e.vlan), e.mac, e.evpn == true ? "evpn" : e.isStatic ? "static" : "learned",
                              e.isStatic ? "-" : String(e.age)] + (tunnels ? [e.vtep ?? "-"] : []))
            }
            table.print()
        }
    }

    struct VTEPs: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "vteps",
            abstract: "Show every vxlan port's remote VTEPs and their counters.",
            discussion: """
                flood is "yes" for a VTEP of the port's remote= list, or on an EVPN port one
                with a type-3 route (it gets every broadcast, multicast and unknown-unicast
                frame), "no" for one learned from its datagrams or known from type-2 routes only.
                Packets and bytes count datagrams and their inner frames' bytes.
                Example: ferry ctl show vteps --json
                """)

        @OptionGroup var connection: ControlOptions

        @Flag(help: "Print JSON instead of a table.")
        var json = false

        func run() throws {
            let reply = try ControlConnection(connection.control).call(.show(.vteps), as: VTEPsReply.self)
            if json { return try reply.printJSON() }
            var table = TextTable([.init("port"), .init("vni", .right), .init("vtep"), .init("flood"),
                                   .init("rx_packets", .right), .init("rx_bytes", .right),
                                   .init("tx_packets", .right), .init("tx_bytes", .right)])
            for v in reply.vteps {
                table.append([v.port, String(v.vni), v.address, v.flood ? "yes" : "no", String(v.rxPackets),
                              String(v.rxBytes), String(v.txPackets), String(v.txBytes)])
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
