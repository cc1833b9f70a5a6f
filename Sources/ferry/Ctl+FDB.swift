import ArgumentParser
import ControlProtocol

extension Ctl {
    struct FDB: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "fdb",
            abstract: "Add or remove forwarding-database entries, or flush the learned ones.",
            discussion: "Example: ferry ctl fdb add 52:54:00:12:34:56 --port vm0",
            subcommands: [Add.self, Del.self, Flush.self])
    }
}

extension Ctl.FDB {
    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Pin a unicast MAC address to a port (a static entry).",
            discussion: """
                Frames to MAC in the VLAN go to that port only; learning never moves the
                entry and it never ages. Replaces any entry, learned or static, for the same
                MAC and VLAN. The VLAN must be one the port carries; it defaults to the
                VLAN the port's untagged frames enter (an access port's, a trunk's native
                one), and a trunk without a native VLAN needs --vlan.
                Example: ferry ctl fdb add 52:54:00:12:34:56 --port trunk0 --vlan 10
                """)

        @OptionGroup var connection: ControlOptions

        @Argument(help: "The MAC address, e.g. 52:54:00:12:34:56.")
        var mac: String

        @Option(help: "The port's name (see `ferry ctl show ports`).")
        var port: String

        @Option(help: "The VLAN (1-4094; default: the port's access or native VLAN).")
        var vlan: Int?

        func run() throws {
            _ = try ControlConnection(connection.control).call(.fdbAdd(mac: mac, port: port, vlan: vlan), as: OKReply.self)
        }
    }

    struct Del: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove the entry, static or learned, for a MAC address in a VLAN.",
            discussion: "Example: ferry ctl fdb del 52:54:00:12:34:56 --vlan 10")

        @OptionGroup var connection: ControlOptions

        @Argument(help: "The MAC address, e.g. 52:54:00:12:34:56.")
        var mac: String

        @Option(help: "The VLAN (1-4094).")
        var vlan: Int = 1

        func run() throws {
            _ = try ControlConnection(connection.control).call(.fdbDel(mac: mac, vlan: vlan), as: OKReply.self)
        }
    }

    struct Flush: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove the learned entries: all, or those of a port and/or a VLAN.",
            discussion: """
                As the Linux bridge's fdb_flush: static entries stay unless --static is given
                (then they go too). Prints how many entries were removed. Addresses still in use
                are learned again from their next frame; until then frames to them are flooded.
                Example: ferry ctl fdb flush --port vm0 --vlan 10
                """)

        @OptionGroup var connection: ControlOptions

        @Option(help: "Only entries on the port of this name.")
        var port: String?

        @Option(help: "Only entries in this VLAN (1-4094).")
        var vlan: Int?

        @Flag(help: "Remove static entries too.")
        var `static` = false

        @Flag(help: "Print JSON instead of a sentence.")
        var json = false

        func run() throws {
            let filter = FDBFlushFilter(port: port, vlan: vlan, includingStatic: `static`)
            let reply = try ControlConnection(connection.control).call(.fdbFlush(filter), as: FDBFlushReply.self)
            if json { return try reply.printJSON() }
            print("removed \(reply.removed) \(reply.removed == 1 ? "entry" : "entries")")
        }
    }
}
