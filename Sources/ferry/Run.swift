import ArgumentParser
import CFerry
import Engine
import Glibc
import Logging
import Platform
import Ports

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the switch.",
        discussion: """
            A MAC-learning switch over the ports given: frames to a learned address
            go to its port, others are flooded within their VLAN. With no --port,
            runs the embedded default: a vhost-user server socket,
            \(Defaults.runDirectory)/vm0.sock, and the TAP \(Defaults.embeddedTap) on the host.
            SIGINT or SIGTERM stops it: sockets are removed, a TAP Ferry created is deleted.
            Example: ferry run --port vhost:/tmp/vm0.sock --port gen:dst=02:00:00:00:00:02,size=64
            """)

    @Option(name: .customLong("port"), help: ArgumentHelp(
        "A port: vhost:PATH[,client][,queues=N][,owner=USER][,group=GROUP][,mode=0660] | tap:IFNAME[,queues=N][,mtu=N] | xdp:IFNAME[,queues=N][,mode=auto|native|generic][,zerocopy=auto|on|off] | packet:IFNAME[,queues=N] | gen:dst=MAC,src=MAC,size=N[,count=N] | sink; each takes [,name=NAME][,vlan=N | ,trunk=N,M,A-B].",
        valueName: "spec"))
    var ports: [String] = []

    @Option(help: "Control socket path.")
    var control: String = Defaults.controlSocket

    @Option(help: ArgumentHelp("Owner of the control socket (a user name or uid; needs CAP_CHOWN unless it is Ferry's own user).",
                               valueName: "user"))
    var controlOwner: String?

    @Option(help: ArgumentHelp("Group of the control socket (a group name or gid): its members may use `ferry ctl`.",
                               valueName: "group"))
    var controlGroup: String?

    @Option(help: ArgumentHelp("Mode of the control socket, octal (default 0660 when --control-owner/--control-group is given, else as bind(2) makes it).",
                               valueName: "mode"))
    var controlMode: String?

    @Option(help: "Pin the worker thread to this CPU (one worker; see --cpus).")
    var cpu: Int?

    @Option(help: "Worker threads; receive queues are spread over them.")
    var workers: Int = 1

    @Option(help: "CPUs to pin workers to, e.g. 0,1 or 2-5 (worker i on the i-th).")
    var cpus: String?

    @Option(help: "Most entries the forwarding database holds.")
    var fdbCapacity: Int = 65_536

    @Option(help: "Seconds before an address no frame came from is forgotten.")
    var agingTime: Int = 300

    @Option(help: "Frames per burst (32-256).")
    var batch: Int = 256

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func validate() throws {
        guard (32...256).contains(batch) else { throw ValidationError("--batch must be 32...256") }
        guard (1...64).contains(workers) else { throw ValidationError("--workers must be 1...64") }
        guard (1...(1 << 24)).contains(fdbCapacity) else { throw ValidationError("--fdb-capacity must be 1...16777216") }
        guard (1...1_000_000).contains(agingTime) else { throw ValidationError("--aging-time must be 1...1000000 s") }
        if cpu != nil && cpus != nil { throw ValidationError("give --cpu or --cpus, not both") }
        _ = try controlPermissions()
        if let cpus { _ = try Self.cpuList(cpus) }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
    }

    func run() throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "ferry")
        let embedded = ports.isEmpty
        let specs = try (embedded ? Defaults.embeddedPorts : ports).map { text in
            do throws(PortSpec.ParseError) { return try PortSpec(parsing: text) } catch { throw ValidationError(error.description) }
        }
        let controlAccess: SocketPermissions.Resolved?
        let asked = try controlPermissions()
        do throws(SocketPermissions.ResolveError) { controlAccess = try asked.resolved() } catch {
            throw ValidationError("control socket: \(error)")
        }
        var socketPaths = [control]
        for spec in specs { if case .vhost(let path, false, _, _) = spec.kind { socketPaths.append(path) } }
        for directory in Set(socketPaths.map(RunDirectory.parent)) {
            do { if try RunDirectory.create(directory) { logger.info("created \(directory) (mode 0755)") } } catch {
                throw ValidationError("cannot create \(directory) for the sockets: \(error)")
            }
        }
        // Signals arrive through a descriptor the control loop polls, so no
        // handler ever runs on a worker thread.
        let signals = try SignalWatcher(signals: [SIGINT, SIGTERM])
        let sw: Switch
        var options = SwitchOptions()
        options.workers = workers
        options.cpus = try cpus.map(Self.cpuList) ?? cpu.map { [$0] }
        options.batchSize = batch
        options.fdbCapacity = fdbCapacity
        options.agingTime = UInt64(agingTime)
        do { sw = try Switch(specs: specs, options: options, logger: logger) } catch {
            throw ValidationError("\(error)")
        }
        let controlServer: ControlServer
        do { controlServer = try ControlServer(path: control, permissions: controlAccess, switch: sw, logger: logger) } catch {
            throw ValidationError("control socket \(control): \(error)")
        }
        sw.control.add(controlServer)
        sw.control.add(signals)
        signals.onSignal = { sig in
            logger.info("signal \(sig): stopping")
            sw.control.stop()
        }
        sw.start()
        for p in sw.ports { logger.info("port \(p.name): \(p.spec.text)") }
        if embedded {
            printQEMUHint(sw)
            // Piped into a log or a journal, stdout is block-buffered: the hint would only show at
            // exit. fflush(nil) flushes every output stream.
            fflush(nil)
        }
        logger.notice("ferry: ready (\(sw.ports.count) ports, control \(control))")
        sw.control.run()
        sw.stop()
        controlServer.close()
        logger.info("stopped")
    }

    /// --control-owner/--control-group/--control-mode, checked but not yet looked up.
    func controlPermissions() throws -> SocketPermissions {
        var permissions = SocketPermissions(owner: controlOwner, group: controlGroup)
        if let controlMode {
            guard let mode = SocketPermissions.mode(parsing: controlMode) else {
                throw ValidationError("--control-mode '\(controlMode)' must be octal permission bits, 0000...0777 (e.g. 0660)")
            }
            permissions.mode = mode
        }
        return permissions
    }

    /// "0,2-3" → [0, 2, 3].
    static func cpuList(_ text: String) throws -> [Int] {
        var cpus: [Int] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = item.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count), let low = Int(bounds[0]), let high = Int(bounds.last!), low >= 0,
                  low <= high, high < 4096 else {
                throw ValidationError("--cpus: '\(item)' is not a CPU number or range (e.g. 0,2-3)")
            }
            cpus += Array(low...high)
        }
        return cpus
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
            case .xdp, .packet, .gen, .sink:
                break
            }
        }
    }
}
