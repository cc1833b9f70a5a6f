import Logging
import Model

/// The switch as a whole: its workers and their CPUs, the burst size, the forwarding
/// database and the log level. The `ferry run` options of the same names override
/// these; the ranges here are what both accept.
public struct SwitchSettings: Equatable, Sendable {
    public var workers = 1
    /// CPUs to pin workers to, in order; nil: not pinned.
    public var cpus: [Int]?
    public var batch = 256
    public var fdbCapacity = SwitchOptions.defaultFDBCapacity
    /// Seconds before an address no frame came from is forgotten.
    public var agingTime = Int(SwitchOptions.defaultAgingTime)
    public var logLevel = Logger.Level.info
    /// When an idle worker sleeps: poll, adaptive or sleep.
    public var idle = IdlePolicy.default
    /// The scheduling class a sleeping worker wakes in: normal or realtime.
    public var wakePriority = WakePriority.default

    public static let workerCounts = 1...64
    /// A burst fills at most one packet batch; below 32 the per-burst costs dominate.
    public static let batchSizes = 32...256
    public static let fdbCapacities = 1...(1 << 24)
    public static let agingTimes = 1...1_000_000

    public init() {}

    /// What the engine takes.
    public var switchOptions: SwitchOptions {
        var options = SwitchOptions()
        options.workers = workers
        options.cpus = cpus
        options.batchSize = batch
        options.fdbCapacity = fdbCapacity
        options.agingTime = UInt64(agingTime)
        options.idle = idle
        options.wakePriority = wakePriority
        return options
    }
}
