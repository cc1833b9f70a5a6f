import Platform
import Switching

/// The forwarding database's one writer, on the control thread: learns what
/// the workers queued (woken by the doorbell) and sweeps the whole table for
/// expired entries once a second, a slice at a time. Static entries from the
/// control socket are written on the same thread, so the table never has two writers.
public final class LearningService: ControlLoopClient {
    public let bridge: Bridge
    let queues: [LearningQueue]
    /// How often every slot of the table is looked at for an expired entry (a sweep
    /// that removes entries runs over by one slot per removal: `age` counts the look
    /// again at a slot an entry shifted into).
    static let agingInterval = 1.0
    /// The sweep is made in this many slices spread over `agingInterval`, one per
    /// turn the control loop makes anyway (`ControlLoop.maxWait`). A fair task on the
    /// CPU of a TAP's sender is a reply late by as long as it runs, when the
    /// scheduler picks it over the sender (docs/PERFORMANCE.md, "Session 9: every
    /// slow reply accounted for"): the database skips empty blocks, and a full table's
    /// sweep (128k slots, ~1 ms cold) comes in quarters.
    static let agingSlices = 4
    private var nextAging = 0.0

    public init(bridge: Bridge, queues: [LearningQueue]) {
        self.bridge = bridge
        self.queues = queues
    }

    public var pollDescriptors: [Int32] { [bridge.doorbell.descriptor] }

    public func timeout(now: Double) -> Double? { max(0, nextAging - now) }

    public func service(now: Double) {
        learn()
        if now >= nextAging {
            nextAging = now + Self.agingInterval / Double(Self.agingSlices)
            // The database keeps its cursor: slices that add up to the table cover every slot once per interval.
            let slice = (bridge.database.slotCount + Self.agingSlices - 1) / Self.agingSlices
            bridge.database.age(now: MonotonicClock.seconds(), budget: slice)
        }
    }

    /// Drains every worker's queue into the database.
    public func learn() {
        bridge.doorbell.answer()
        let now = MonotonicClock.seconds()
        for q in queues { q.drain(into: bridge.database, now: now) }
    }
}
