import ArgumentParser
import CFerry
import Configuration
import Engine
import Foundation
import Glibc
import Logging
import Model
import Platform
import Ports
import Telemetry

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the switch.",
        discussion: """
            A MAC-learning switch over the ports given: frames to a learned address
            go to its port, others are flooded within their VLAN. With neither --port
            nor --config, runs the embedded default: a vhost-user server socket,
            \(Defaults.runDirectory)/vm0.sock, and the TAP \(Defaults.embeddedTap) on the host.
            With --config FILE, runs what the file describes (docs/CONFIG.md; checked by
            `ferry check FILE`) and SIGHUP re-reads it: ports it adds, removes or changes are
            added, removed or replaced while frames flow; a file with errors changes nothing.
            SIGINT or SIGTERM stops it: sockets are removed, a TAP Ferry created is deleted.
            Example: ferry run --port vhost:/tmp/vm0.sock --port gen:dst=02:00:00:00:00:02,size=64
            Example: ferry run --config /etc/ferry/ferry.yaml
            """)

    @Option(help: ArgumentHelp(
        "A config file (YAML, docs/CONFIG.md): the switch, its ports, the control socket. --port adds ports to it, the other options override its switch settings; SIGHUP re-reads it.",
        valueName: "file"))
    var config: String?

    @Option(name: .customLong("port"), help: ArgumentHelp(
        "A port: vhost:PATH[,client][,queues=N][,owner=USER][,group=GROUP][,mode=0660][,offloads=on|csum|off] | tap:IFNAME[,queues=N][,mtu=N][,offloads=on|csum|off] | xdp:IFNAME[,queues=N][,mode=auto|native|generic][,zerocopy=auto|on|off] | packet:IFNAME[,queues=N][,offloads=on|csum|off] | gen:dst=MAC,src=MAC,size=N|N/M/...|imix[,count=N][,delay=MS][,rate=1Mpps|10Gbps][,burst=N][,flows=N][,tag=N][,stamp=on|off][,full=drop|wait] | sink | vxlan:VNI,local=IP[,remote=IP[+IP...]][,port=4789][,evpn=VXLANDEV,evpn_port=BRIDGEPORT][,via=XDPPORT] | virtio-user:PATH[,server][,queue_size=N]; each takes [,name=NAME][,vlan=N | ,trunk=N,M,A-B[,native=N]][,group_fwd_mask=0xNNNN].",
        valueName: "spec"))
    var ports: [String] = []

    @Option(name: .customLong("fdb"), help: ArgumentHelp(
        "A static forwarding entry, MAC,port=NAME[,vlan=N] (as the config file's fdb: items): never ages, never moves.",
        valueName: "entry"))
    var staticEntries: [String] = []

    @OptionGroup var runtime: RuntimeOptions

    @Option(help: ArgumentHelp("Owner of the control socket (a user name or uid; needs CAP_CHOWN unless it is Ferry's own user).",
                               valueName: "user"))
    var controlOwner: String?

    @Option(help: ArgumentHelp("Group of the control socket (a group name or gid): its members may use `ferry ctl`.",
                               valueName: "group"))
    var controlGroup: String?

    @Option(help: ArgumentHelp("Mode of the control socket, octal (default 0660 when --control-owner/--control-group is given, else as bind(2) makes it).",
                               valueName: "mode"))
    var controlMode: String?

    @Option(help: "Most entries the forwarding database holds (default 65536).")
    var fdbCapacity: Int?

    @Option(help: "Seconds before an address no frame came from is forgotten (default 300).")
    var agingTime: Int?

    @Option(help: ArgumentHelp(
        "Log lines on stderr: text, journal (a <N> syslog-priority prefix journald reads), json (one object per line), or auto: journal when stderr is the systemd journal (JOURNAL_STREAM), else text.",
        valueName: "format"))
    var logFormat: LogFormat = .auto

    func validate() throws {
        if let fdbCapacity, !SwitchSettings.fdbCapacities.contains(fdbCapacity) {
            throw ValidationError("--fdb-capacity must be 1...16777216")
        }
        if let agingTime, !SwitchSettings.agingTimes.contains(agingTime) {
            throw ValidationError("--aging-time must be 1...1000000 s")
        }
        _ = try controlPermissions()
        _ = try commandLinePorts(afterFilePorts: 0)
        _ = try commandLineStaticEntries()
    }

    /// The `--fdb` options, checked on their own; whether their ports carry them is the
    /// validator's, with the rest of the config.
    func commandLineStaticEntries() throws -> [StaticFDBEntry] {
        try staticEntries.map { text in
            do throws(StaticFDBEntry.Refusal) { return try StaticFDBEntry(parsing: text) } catch {
                throw ValidationError(error.description)
            }
        }
    }

    func run() throws {
        let (running, commandLinePorts, embedded) = try plan()
        let settings = running.switchSettings
        let format = logFormat.resolved()
        LoggingSystem.bootstrap { label in
            StandardErrorLogHandler(label: label, format: format, level: settings.logLevel)
        }
        let logger = Logger(label: "ferry")
        do {
            try serve(running, commandLinePorts: commandLinePorts, embedded: embedded, logger: logger)
        } catch let failure as RunFailure {
            logger.critical("\(failure.message)")
            throw failure.status
        }
    }

    /// What runs, checked by the same validator as `ferry check`: the config file's
    /// errors, or what the validator refuses in the whole, go to stderr with exit status 1.
    private func plan() throws -> (FerryConfig, commandLinePorts: [PortSpec], embedded: Bool) {
        let fileConfig = try config.map(Self.load)
        let embedded = fileConfig == nil && ports.isEmpty
        let commandLinePorts = try commandLinePorts(afterFilePorts: fileConfig?.ports.count ?? 0, embedded: embedded)
        let running = completed(fileConfig ?? FerryConfig(), commandLinePorts: commandLinePorts)
        do throws(ConfigErrors) { try running.validate(file: config ?? "the command line") } catch {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitStatus.configRefused
        }
        return (running, commandLinePorts, embedded)
    }

    /// Starts the switch on `running` and serves until SIGINT or SIGTERM.
    private func serve(_ running: FerryConfig, commandLinePorts: [PortSpec], embedded: Bool, logger: Logger) throws {
        let settings = running.switchSettings
        let controlPath = running.control.path ?? Defaults.controlSocket
        let controlAccess: SocketPermissions.Resolved?
        do throws(SocketPermissions.ResolveError) { controlAccess = try running.control.access.resolved() } catch {
            throw RunFailure("control socket: \(error)", ExitStatus.configRefused)
        }
        var socketPaths = [controlPath]
        for spec in running.ports { if case .vhost(let path, false, _, _) = spec.kind { socketPaths.append(path) } }
        for directory in Set(socketPaths.map(RunDirectory.parent)).sorted() {
            do { if try RunDirectory.create(directory) { logger.info("created \(directory) (mode 0755)") } } catch {
                throw RunFailure("cannot create \(directory) for the sockets: \(error)", ExitStatus.cannotCreate)
            }
        }
        // Signals arrive through a descriptor the control loop polls, so no
        // handler ever runs on a worker thread.
        let signals: SignalWatcher
        do { signals = try SignalWatcher(signals: [SIGINT, SIGTERM, SIGHUP]) } catch {
            throw RunFailure("cannot watch signals: \(error)", ExitStatus.systemError)
        }
        let sw: Switch
        do { sw = try Switch(specs: running.ports, options: settings.switchOptions, logger: logger) } catch {
            throw RunFailure("\(error)", ExitStatus.unavailable)
        }
        StaticEntries.install(running.resolvedStaticEntries, in: sw, logger: logger)
        let captures = CaptureService(switch: sw, logger: logger)
        let controlServer: ControlServer
        do {
            controlServer = try ControlServer(path: controlPath, permissions: controlAccess, switch: sw, captures: captures,
                                              logger: logger)
        } catch {
            sw.stop()
            throw RunFailure("control socket \(controlPath): \(error)", ExitStatus.unavailable)
        }
        sw.control.add(controlServer)
        sw.control.add(captures)
        var metricsServer: MetricsServer?
        if let metrics = running.metrics.listen, let address = ListenAddress(metrics) {
            do {
                metricsServer = try MetricsServer(address: address, logger: logger) {
                    MetricsExposition.render(sw, captures: captures)
                }
            } catch {
                controlServer.close()
                sw.stop()
                throw RunFailure("metrics \(metrics): \(error)", ExitStatus.unavailable)
            }
            sw.control.add(metricsServer!)
            logger.info("metrics: http://\(metrics)/metrics (port \(metricsServer!.port))")
        }
        sw.control.add(signals)
        let notifier = ServiceNotifier(logger: logger)
        sw.control.add(notifier)
        let reloader = config.map { path in
            ConfigReloader(path: path, running: running, switch: sw, logger: logger) { file in
                let wanted = completed(file, commandLinePorts: commandLinePorts)
                try wanted.validate(file: path)
                return wanted
            }
        }
        signals.onSignal = { sig in
            guard sig == SIGHUP else {
                logger.info("signal \(sig): stopping")
                notifier.stopping()
                return sw.control.stop()
            }
            guard let reloader else { return logger.notice("SIGHUP: no --config file to re-read") }
            reloader.reload()
        }
        sw.start()
        for p in sw.ports { logger.info("port \(p.name): \(p.spec.text)") }
        if embedded {
            printQEMUHint(sw)
            // Piped into a log or a journal, stdout is block-buffered: the hint would only show at
            // exit. fflush(nil) flushes every output stream.
            fflush(nil)
        }
        logger.notice("ready (\(sw.ports.count) ports, control \(controlPath))")
        notifier.ready(status: "switching: \(sw.ports.count) ports")
        sw.control.run()
        captures.close()
        sw.stop()
        controlServer.close()
        metricsServer?.close()
        logger.info("stopped")
    }

    /// The file's config, or its errors on stderr and exit status 1.
    private static func load(_ path: String) throws -> FerryConfig {
        do throws(ConfigErrors) { return try FerryConfig.load(path: path) } catch {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitStatus.configRefused
        }
    }

    /// The `--port` options (the embedded default's two ports when there is neither
    /// --port nor --config), each named `pN` unless it has a name.
    func commandLinePorts(afterFilePorts fileCount: Int, embedded: Bool = false) throws -> [PortSpec] {
        try (embedded ? Defaults.embeddedPorts : ports).enumerated().map { i, text in
            do throws(PortSpec.ParseError) {
                var spec = try PortSpec(parsing: text)
                // Named now, after the file's ports, so a reload that changes the file's port
                // count does not rename (and so replace) a port from the command line.
                if spec.name == nil { spec.name = "p\(fileCount + i)" }
                return spec
            } catch { throw ValidationError(error.description) }
        }
    }

    /// What runs: the file's config with the command line's ports after its own and the
    /// command line's settings over its. A reload completes the re-read file the same way,
    /// and `ferry check` completes a file with an empty command line, so that the
    /// validator sees what `ferry run --config FILE` would run.
    func completed(_ file: FerryConfig, commandLinePorts: [PortSpec]) -> FerryConfig {
        var config = file
        config.ports.append(contentsOf: commandLinePorts)
        // validate() refused any --fdb that does not parse.
        config.staticEntries.append(contentsOf: (try? commandLineStaticEntries()) ?? [])
        runtime.apply(to: &config.switchSettings)
        if let fdbCapacity { config.switchSettings.fdbCapacity = fdbCapacity }
        if let agingTime { config.switchSettings.agingTime = agingTime }
        config.control.path = runtime.control ?? config.control.path ?? Defaults.controlSocket
        // The file's owner/group/mode for the control socket, each overridden by its flag.
        if let flags = try? controlPermissions() {
            if let owner = flags.owner { config.control.access.owner = owner }
            if let group = flags.group { config.control.access.group = group }
            if let mode = flags.mode { config.control.access.mode = mode }
        }
        if let metrics = runtime.metrics { config.metrics.listen = metrics }
        return config
    }

    /// --control-owner/--control-group/--control-mode, checked as a port's or the config
    /// file's are, but not yet looked up.
    func controlPermissions() throws -> SocketPermissions {
        do throws(SocketPermissions.Invalid) {
            return try SocketPermissions(owner: controlOwner, group: controlGroup, modeText: controlMode)
        } catch {
            throw ValidationError("--control-\(error.key): \(error.problem)")
        }
    }

    private func printQEMUHint(_ sw: Switch) {
        for p in sw.ports {
            switch p.spec.kind {
            case .vhost(let path, _, _, _):
                print("""
                    attach a guest to \(p.name):
                      qemu-system-x86_64 ... -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem \\
                        -chardev socket,id=\(p.name),path=\(path) -netdev vhost-user,id=\(p.name),chardev=\(p.name) \\
                        -device virtio-net-pci,netdev=\(p.name)
                    """)
            case .tap(let interface, _, _):
                print("""
                    the host is on the switch through TAP \(interface): give it an address in the guests' subnet, e.g.
                      ip addr add 198.18.0.1/24 dev \(interface)
                    """)
            case .xdp, .packet, .gen, .sink, .vxlan, .virtioUser:
                break
            }
        }
    }
}
