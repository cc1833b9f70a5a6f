import ArgumentParser

@main
struct Ferry: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry",
        abstract: "A kernel-bypass layer-2 switch for vhost-user guests.",
        discussion: """
            `ferry run` starts the switch (with no --port: a vhost-user socket
            for one guest and the host's TAP ferry0); `ferry check FILE` validates a
            config file; `ferry ctl` talks to it over its control socket; `ferry lab` measures
            throughput, loss and latency with a generator and a sink; `ferry version` says what it runs on.
            Example: ferry run --port vhost:/run/ferry/vm0.sock,group=kvm --port tap:ferry0
            """,
        version: FerryVersion.number,
        subcommands: [Run.self, Check.self, Ctl.self, Lab.self, Version.self])
}
