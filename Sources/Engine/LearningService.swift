import Platform
import Switching

/// The forwarding database's one writer, on the control thread: learns what
/// the workers queued (woken by the doorbell) and ages entries once a second.
/// Static entries from the control socket are written on the same thread, so
/// the table never has two writers.
public final class LearningService: ControlLoopClient {
    public let bridge: Bridge
    let queues: [LearningQueue]
    /// How often the table is swept for expired entries.
    static let agingInterval = 1.0
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
            nextAging = now + Self.agingInterval
            // The whole table each time: a sweep of 128k slots takes well under a millisecond.
            bridge.database.age(now: MonotonicClock.seconds(), budget: bridge.database.slotCount)
        }
    }

    /// Drains every worker's queue into the database.
    public func learn() {
        bridge.doorbell.answer()
        let now = MonotonicClock.seconds()
        for q in queues { q.drain(into: bridge.database, now: now) }
    }
}
