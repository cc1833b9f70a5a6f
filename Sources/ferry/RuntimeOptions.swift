import ArgumentParser
import Configuration
import Logging
import Model
import Platform

/// The options of a running switch that `ferry run` and `ferry lab` share: its workers and
/// their CPUs, the burst, how an idle worker waits, the control socket, the metrics endpoint
/// and the log level. One declaration, so the two commands cannot drift apart in name,
/// range or help text.
struct RuntimeOptions: ParsableArguments {
    @Option(help: "Pin the worker thread to this CPU (one worker; see --cpus).")
    var cpu: Int?

    @Option(help: "Worker threads; receive queues are spread over them (default 1).")
    var workers: Int?

    @Option(help: "CPUs to pin workers to, e.g. 0,1 or 2-5 (worker i on the i-th).")
    var cpus: String?

    @Option(help: "Frames per burst (32-256, default 256).")
    var batch: Int?

    @Option(help: ArgumentHelp(
        "When an idle worker sleeps: poll (never: a whole core; on a shared CPU the scheduler preempts it), adaptive (100 us after frames from a guest, whose next burst then needs no kick; at once after frames only from TAP, AF_PACKET, AF_XDP or vxlan ports, 20 us if its last sleep found a frame already waiting: a stream, whose every wake-up the sender's CPU pays for), sleep (always at once: least CPU, but a guest kicks for nearly every burst) (default adaptive).",
        valueName: "policy"))
    var idle: IdlePolicy?

    @Option(help: ArgumentHelp(
        "The scheduling class a sleeping worker wakes in: realtime (SCHED_FIFO while it sleeps and for a short spell after a wake-up: it runs at once on a busy CPU; needs CAP_SYS_NICE) or normal (waits its turn) (default realtime).",
        valueName: "class"))
    var wakePriority: WakePriority?

    @Option(help: ArgumentHelp(
        "Control socket path (`ferry ctl --control PATH`). run: default the config's control.path, else $FERRY_CONTROL, else \(Defaults.runDirectory)/ferry.sock; lab: none unless given.",
        valueName: "path"))
    var control: String?

    @Option(help: ArgumentHelp("Serve Prometheus metrics over HTTP at GET /metrics on this address, e.g. 127.0.0.1:9469 or [::1]:9469.",
                               valueName: "addr:port"))
    var metrics: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error (default info; lab: warning, its own output is the table).")
    var logLevel: String?

    func validate() throws {
        if let batch, !SwitchSettings.batchSizes.contains(batch) { throw ValidationError("--batch must be 32...256") }
        if let workers, !SwitchSettings.workerCounts.contains(workers) { throw ValidationError("--workers must be 1...64") }
        if cpu != nil && cpus != nil { throw ValidationError("give --cpu or --cpus, not both") }
        if let cpus { _ = try Self.cpuList(cpus) }
        if let logLevel, Logger.Level(rawValue: logLevel) == nil { throw ValidationError("unknown --log-level \(logLevel)") }
        if let metrics, ListenAddress(metrics) == nil { throw ValidationError(MetricsSettings.listenProblem(metrics)) }
    }

    /// The options given, over `settings` (a config file's, or the defaults).
    func apply(to settings: inout SwitchSettings) {
        if let workers { settings.workers = workers }
        if let cpus, let list = try? Self.cpuList(cpus) { settings.cpus = list }
        if let cpu { settings.cpus = [cpu] }
        if let batch { settings.batch = batch }
        if let idle { settings.idle = idle }
        if let wakePriority { settings.wakePriority = wakePriority }
        if let logLevel, let level = Logger.Level(rawValue: logLevel) { settings.logLevel = level }
    }

    static func cpuList(_ text: String) throws -> [Int] {
        switch CPUList.parse(text) {
        case .success(let cpus): return cpus
        case .failure(let invalid): throw ValidationError("--cpus: \(invalid.description)")
        }
    }
}
