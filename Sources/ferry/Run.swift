import ArgumentParser
import CFerry
import Engine
import Glibc
import Logging
import Platform
import Ports
import Telemetry

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
        "A port: vhost:PATH[,client][,queues=N] | tap:IFNAME[,queues=N][,mtu=N] | xdp:IFNAME[,queues=N][,mode=auto|native|generic][,zerocopy=auto|on|off] | packet:IFNAME[,queues=N] | gen:dst=MAC,src=MAC,size=N[,count=N] | sink; each takes [,name=NAME][,vlan=N | ,trunk=N,M,A-B].",
        valueName: "spec"))
    var ports: [String] = []

    @Option(help: "Control socket path.")
    var control: String = Defaults.controlSocket

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

    @Option(help: ArgumentHelp("Serve Prometheus metrics over HTTP at GET /metrics on this address, e.g. 127.0.0.1:9100 or [::1]:9100.",
                               valueName: "addr:port"))
    var metrics: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func validate() throws {
        guard (32...256).contains(batch) else { throw ValidationError("--batch must be 32...256") }
        guard (1...64).contains(workers) else { throw ValidationError("--workers must be 1...64") }
        guard (1...(1 << 24)).contains(fdbCapacity) else { throw ValidationError("--fdb-capacity must be 1...16777216") }
        guard (1...1_000_000).contains(agingTime) else { throw ValidationError("--aging-time must be 1...1000000 s") }
        if cpu != nil && cpus != nil { throw ValidationError("give --cpu or --cpus, not both") }
        if let cpus { _ = try Self.cpuList(cpus) }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        if let metrics, ListenAddress(metrics) == nil {
            throw ValidationError("--metrics '\(metrics)' is not ADDR:PORT (e.g. 127.0.0.1:9100 or [::1]:9100)")
        }
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
        if embedded { mkdir(Defaults.runDirectory, 0o755) }
        let specs = try (embedded ? Defaults.embeddedPorts : ports).map { text in
            do throws(PortSpec.ParseError) { return try PortSpec(parsing: text) } catch { throw ValidationError(error.description) }
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
        let captures = CaptureService(switch: sw, logger: logger)
        let controlServer = try ControlServer(path: control, switch: sw, captures: captures, logger: logger)
        sw.control.add(controlServer)
        sw.control.add(captures)
        var metricsServer: MetricsServer?
        if let metrics, let address = ListenAddress(metrics) {
            do {
                metricsServer = try MetricsServer(address: address, logger: logger) {
                    MetricsExposition.render(sw, captures: captures)
                }
            } catch {
                throw ValidationError("--metrics \(metrics): \(error)")
            }
            sw.control.add(metricsServer!)
            logger.info("metrics: http://\(metrics)/metrics (port \(metricsServer!.port))")
        }
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
        captures.close()
        sw.stop()
        controlServer.close()
        metricsServer?.close()
        logger.info("stopped")
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
            case .vhost(let path, _, _):
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
