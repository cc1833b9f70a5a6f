import ArgumentParser

@main
struct Ferry: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry",
        abstract: "A kernel-bypass layer-2 switch for vhost-user guests.",
        subcommands: [Run.self, Check.self, Ctl.self])
}
