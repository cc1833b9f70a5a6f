/// How the switch runs: workers, CPUs, burst size, the forwarding database.
public struct SwitchOptions: Sendable {
    /// Addresses the forwarding database holds unless told otherwise.
    public static let defaultFDBCapacity = 65_536
    /// The ageing time IEEE 802.1Q recommends for dynamic filtering entries, in seconds.
    public static let defaultAgingTime: UInt64 = 300

    public var workers = 1
    /// CPUs to pin workers to, in order (worker i on cpus[i % count]); nil: not pinned.
    public var cpus: [Int]?
    public var batchSize = 256
    public var fdbCapacity = SwitchOptions.defaultFDBCapacity
    public var agingTime = SwitchOptions.defaultAgingTime
    /// When an idle worker sleeps.
    public var idle = IdlePolicy.default
    /// The scheduling class a worker sleeps and wakes in.
    public var wakePriority = WakePriority.default

    public init() {}
}
