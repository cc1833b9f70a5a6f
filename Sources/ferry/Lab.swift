import ArgumentParser
import CFerry
import Configuration
import Engine
import Foundation
import Glibc
import Logging
import Model
import Packets
import Platform
import Ports
import Synchronization
import Telemetry

struct Lab: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure throughput, loss and latency with a generator and a sink (docs/LAB.md).",
        discussion: """
            Runs a switch over the ports given, as `ferry run` would, and measures with its first
            gen: port and its first sink: through whatever lies between them (the switch alone, a
            guest that loops frames back, an external switch behind a tap:, packet: or xdp: uplink;
            VLANs keep the two sides apart). The generator is driven by the lab: its rate= and
            count= are replaced by each trial's, and a full destination drops frames rather than
            holding the generator back. Every frame carries its flow's sequence number and its
            send time, so the sink counts loss, reordering, duplicates and latency.
            throughput: one trial at --rate (default: as fast as the generator goes).
            ndr: the no-drop rate and the partial-drop rate (loss <= --loss %), RFC 2544 binary search
            below --rate (default: what the generator reaches unhindered).
            latency: the NDR (or --ndr), then latency at 10, 50 and 90 % of it.
            A progress line on a terminal, a table at the end; --json FILE and --plot FILE.svg keep them.
            Example: ferry lab ndr --port gen:dst=02:00:00:00:00:02,size=64 --port sink --duration 1
            """)

    enum Test: String, ExpressibleByArgument, CaseIterable {
        case throughput, ndr, latency
    }

    @Argument(help: "throughput, ndr or latency.")
    var test: Test

    @Option(name: .customLong("port"), help: ArgumentHelp(
        "A port, as `ferry run --port` takes it; at least one gen: and one sink.", valueName: "spec"))
    var ports: [String] = []

    @Option(name: .customLong("fdb"), help: ArgumentHelp(
        "A static forwarding entry, MAC,port=NAME[,vlan=N], as `ferry run --fdb`: pins where a loop's frames go.",
        valueName: "entry"))
    var staticEntries: [String] = []

    @Option(help: "Seconds each trial sends for (default 2).")
    var duration: Double = 2

    @Option(help: ArgumentHelp("The rate: throughput's, the NDR search's upper bound. Frames (1.5Mpps) or bits (10Gbps) per second.",
                               valueName: "rate"))
    var rate: String?

    @Option(help: "The partial-drop rate's loss, percent of the frames sent (default 0.5).")
    var loss: Double = 0.5

    @Option(help: "The search ends when the interval is within this percent of the rate (default 1).")
    var precision: Double = 1

    @Option(help: ArgumentHelp("latency: measure at 10, 50 and 90 % of this rate instead of searching for the NDR.",
                               valueName: "rate"))
    var ndr: String?

    @Option(help: ArgumentHelp("Write the results as JSON to this file.", valueName: "file"))
    var json: String?

    @Option(help: ArgumentHelp("Draw loss against rate and the latency histograms into this SVG file.", valueName: "file"))
    var plot: String?

    /// As `ferry run` takes them; the control socket and the metrics only when asked for,
    /// the log level warning unless asked for (the lab's own output is the table).
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard duration > 0 && duration <= 3600 else { throw ValidationError("--duration must be more than 0 and at most 3600 s") }
        guard loss >= 0 && loss < 100 else { throw ValidationError("--loss must be 0...100 %") }
        guard precision > 0 && precision < 50 else { throw ValidationError("--precision must be more than 0 and below 50 %") }
        if let rate, PortSpec.rate(rate) == nil { throw ValidationError("--rate: '\(rate)' is not a rate (1.5Mpps, 10Gbps, unlimited)") }
        if let ndr, PortSpec.rate(ndr) == nil { throw ValidationError("--ndr: '\(ndr)' is not a rate (1.5Mpps, 10Gbps)") }
        _ = try labConfig()
    }

    /// The ports and static entries as one config, checked by the validator `ferry run` uses.
    func labConfig() throws -> (config: FerryConfig, generator: String, analyser: String) {
        let (specs, generator, analyser) = try labPorts()
        var config = FerryConfig()
        config.ports = specs
        for text in staticEntries {
            do throws(StaticFDBEntry.Refusal) { config.staticEntries.append(try StaticFDBEntry(parsing: text)) } catch {
                throw ValidationError(error.description)
            }
        }
        do throws(ConfigErrors) { try config.validate(file: "the command line") } catch {
            throw ValidationError(error.description)
        }
        return (config, generator, analyser)
    }

    /// The ports, named `pN` unless named; the first generator made the lab's: paused, with a
    /// rate and full=drop (so that a full destination drops its frames instead of holding it back).
    func labPorts() throws -> (specs: [PortSpec], generator: String, analyser: String) {
        var specs: [PortSpec] = []
        var generator: String?
        var analyser: String?
        for (i, text) in ports.enumerated() {
            var spec: PortSpec
            do throws(PortSpec.ParseError) { spec = try PortSpec(parsing: text) } catch {
                throw ValidationError(error.description)
            }
            if spec.name == nil { spec.name = "p\(i)" }
            if case .gen(var g) = spec.kind, generator == nil {
                g.count = 0
                if g.rate == .unlimited { g.rate = .framesPerSecond(1) }
                g.waitsWhenFull = false
                spec.kind = .gen(g)
                generator = spec.name
            }
            if case .sink = spec.kind, analyser == nil { analyser = spec.name }
            specs.append(spec)
        }
        guard let generator, let analyser else {
            throw ValidationError("the lab needs a gen: port and a sink port (--port gen:... --port sink)")
        }
        return (specs, generator, analyser)
    }

    func run() throws {
        var settings = SwitchSettings()
        settings.logLevel = .warning
        runtime.apply(to: &settings)
        let level = settings.logLevel
        LoggingSystem.bootstrap { StandardErrorLogHandler(label: $0, format: .text, level: level) }
        let logger = Logger(label: "ferry")
        let (config, generatorName, analyserName) = try labConfig()
        let specs = config.ports
        let flags = LabFlags()
        let signals: SignalWatcher
        do { signals = try SignalWatcher(signals: [SIGINT, SIGTERM]) } catch {
            logger.critical("cannot watch signals: \(error)")
            throw ExitStatus.systemError
        }
        signals.onSignal = { _ in flags.interrupted.store(true, ordering: .relaxed) }
        let sw: Switch
        do { sw = try Switch(specs: specs, options: settings.switchOptions, logger: logger) } catch {
            logger.critical("\(error)")
            throw ExitStatus.unavailable
        }
        guard case .gen(let generator) = sw.port(named: generatorName)?.port,
              case .sink(let sink) = sw.port(named: analyserName)?.port else {
            sw.stop()
            throw ExitStatus.unavailable
        }
        StaticEntries.install(config.resolvedStaticEntries, in: sw, logger: logger)
        let services = try LabServices(switch: sw, control: runtime.control, metrics: runtime.metrics, logger: logger)
        sw.control.add(signals)
        let stopper = LabStopper(loop: sw.control, switch: sw)
        sw.control.add(stopper)
        // SAFETY of the unchecked capture: from here the loop is run by that thread alone;
        // this one only reads atomics and stops it through `LabStopper`, on the loop's thread.
        nonisolated(unsafe) let loop = sw.control
        let controlThread = Thread {
            loop.run()
            flags.controlLoopEnded.store(true, ordering: .releasing)
        }
        controlThread.start()
        sw.start()
        // A guest or a front-end connects in its own time: trials wait for every port to run.
        let readyBy = MonotonicClock.now() + 15
        while !stopper.allRunning.load(ordering: .acquiring) && MonotonicClock.now() < readyBy
            && !flags.interrupted.load(ordering: .relaxed) {
            Thread.sleep(forTimeInterval: 0.05)
        }
        if !stopper.allRunning.load(ordering: .acquiring) {
            logger.warning("not every port is running after 15 s: measuring anyway")
        }

        var result = LabResult(test: test.rawValue, ports: specs.map(\.text), generator: generatorName,
                               analyser: analyserName, duration: duration, lossLimit: loss / 100,
                               meanFrameSize: generator.meanFrameSize)
        result.loadBefore = Self.loadAverage()
        let workers = sw.gate.workers
        let bench = LabBench(generator: generator, analyser: sink.analyser, flags: flags,
                             portDrops: { Self.drops(of: sw) }) {
            workers.reduce(0) { $0 &+ $1.busyLoops.load(ordering: .relaxed) &+ $1.idleLoops.load(ordering: .relaxed) }
        }
        let progress = LabProgress(enabled: isatty(STDERR_FILENO) == 1)
        bench.onProgress = progress.show
        LabProcedure(bench: bench, progress: progress, duration: duration, precision: precision / 100,
                     upperBound: rate.flatMap { framesPerSecond($0, generator) },
                     knownNDR: ndr.flatMap { framesPerSecond($0, generator) }).run(test, into: &result)
        progress.finish()
        result.interrupted = flags.interrupted.load(ordering: .relaxed)
        result.loadAfter = Self.loadAverage()

        stopper.stop()
        while !flags.controlLoopEnded.load(ordering: .acquiring) { Thread.sleep(forTimeInterval: 0.01) }
        sw.stop()
        services.close()
        print(result.table, terminator: "")
        if let json { try write(Self.encoded(result), to: json) }
        if let plot { try write(Data(LabPlot.svg(result).utf8), to: plot) }
        // As a shell reports a command SIGINT ended.
        if result.interrupted { throw ExitCode(128 + SIGINT) }
    }

    /// A rate as frames per second, bits turned into frames by the generator's mean frame size; nil: unlimited.
    private func framesPerSecond(_ text: String, _ generator: GenPort) -> Double? {
        switch PortSpec.rate(text) {
        case .framesPerSecond(let r): r
        case .bitsPerSecond(let r): r / (8 * generator.meanFrameSize)
        case .unlimited, nil: nil
        }
    }

    private func write(_ data: Data, to path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: data) else {
            FileHandle.standardError.write(Data("ferry lab: cannot write \(path)\n".utf8))
            throw ExitStatus.cannotCreate
        }
    }

    static func encoded(_ result: LabResult) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return ((try? encoder.encode(result)) ?? Data()) + Data("\n".utf8)
    }

    /// Every port's drops so far, by reason: each trial keeps what moved during it.
    static func drops(of sw: Switch) -> [String: [String: UInt64]] {
        var drops: [String: [String: UInt64]] = [:]
        for p in sw.ports {
            let counts = p.port.counters.reduce(into: [DropReason: UInt64]()) { total, queue in
                total.merge(queue.snapshot.drops, uniquingKeysWith: +)
            }
            drops[p.name] = Dictionary(uniqueKeysWithValues: counts.map { ($0.key.name, $0.value) })
        }
        return drops
    }

    /// The 1-minute load average, for the record: figures on a loaded machine are indicative.
    static func loadAverage() -> Double? {
        var loads = [Double](repeating: 0, count: 3)
        return getloadavg(&loads, 3) >= 1 ? (loads[0] * 100).rounded() / 100 : nil
    }
}

/// The lab's part of the control thread: tells the lab thread when every port runs (a
/// port's state is the control thread's to read), and stops the loop when the lab is done.
final class LabStopper: ControlLoopClient {
    private let loop: ControlLoop
    private let sw: Switch
    private let requested = Atomic<Bool>(false)
    let allRunning = Atomic<Bool>(false)

    init(loop: ControlLoop, switch sw: Switch) {
        self.loop = loop
        self.sw = sw
    }

    func stop() { requested.store(true, ordering: .releasing) }

    var pollDescriptors: [Int32] { [] }
    func timeout(now: Double) -> Double? { 0.05 }

    func service(now: Double) {
        allRunning.store(sw.ports.allSatisfy { $0.state.hasPrefix("running") || $0.state == "finished" },
                         ordering: .releasing)
        guard requested.load(ordering: .acquiring) else { return }
        loop.stop()
    }
}
