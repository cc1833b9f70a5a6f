import ArgumentParser
import ControlProtocol

extension Ctl {
    struct PortCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "port",
            abstract: "Add or remove a port while Ferry runs.",
            discussion: """
                The other ports keep forwarding while it happens; none of their frames is lost.
                Example: ferry ctl port add tap:ferry1,vlan=10,name=host1
                """,
            subcommands: [Add.self, Del.self])
    }
}

extension Ctl.PortCommand {
    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Open a port from a spec, as `ferry run --port SPEC` would.",
            discussion: """
                The port gets the lowest free index and its name from name=NAME (default: p
                and its index). Refused for a name, socket path or interface another port has,
                a full switch (1,024 ports), or a port that cannot be opened; an uplink (xdp,
                packet) that cannot be opened is refused too, not kept as a failed port.
                Example: ferry ctl port add vhost:/run/ferry/vm1.sock,name=vm1,vlan=10
                """)

        @OptionGroup var connection: ControlOptions

        @Argument(help: ArgumentHelp(
            "The port: vhost:PATH[,client][,queues=N][,offloads=...] | tap:IFNAME[,queues=N][,mtu=N][,offloads=...] | xdp:IFNAME[,...] | packet:IFNAME[,queues=N][,offloads=...] | gen:... | sink | vxlan:VNI,local=IP[,remote=IP...] | virtio-user:PATH[,server][,queue_size=N]; each takes [,name=NAME][,vlan=N | ,trunk=N,M,A-B[,native=N]] (see `ferry run --help`).",
            valueName: "spec"))
        var spec: String

        @Flag(help: "Print Ferry's JSON reply instead of a table.")
        var json = false

        func run() throws {
            try Ctl.PortCommand.change(connection.control, .portAdd(spec: spec), json: json)
        }
    }

    struct Del: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a port.",
            discussion: """
                Its forwarding entries, learned and static, are forgotten; a vhost port's
                front-end is dropped and its socket removed, a TAP Ferry created is deleted,
                an xdp uplink's program detached.
                Example: ferry ctl port del vm1
                """)

        @OptionGroup var connection: ControlOptions

        @Argument(help: "The port's name (see `ferry ctl show ports`).")
        var name: String

        @Flag(help: "Print Ferry's JSON reply instead of a table.")
        var json = false

        func run() throws {
            try Ctl.PortCommand.change(connection.control, .portDel(name: name), json: json)
        }
    }

    /// Sends the change and prints the port it names, as one row of `show ports`.
    static func change(_ control: String, _ request: ControlRequest, json: Bool) throws {
        let reply = try ControlConnection(control).call(request, as: PortChangeReply.self)
        if json { return try reply.printJSON() }
        Ctl.Show.portsTable([reply.port]).print()
    }
}
