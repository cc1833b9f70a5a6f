import Model
import Platform
import Switching
import XCTest

@testable import Engine

/// The control thread's aging sweep comes in slices: no turn of the control
/// loop walks the whole table (docs/PERFORMANCE.md, "Session 9: every slow reply
/// accounted for"), and every slot is still looked at about once per `agingInterval`.
final class LearningServiceTests: XCTestCase {
    func testTheAgingSweepCoversTheTableOncePerIntervalInSlices() {
        let database = ForwardingDatabase(capacity: 1024, agingTime: 1)
        let service = LearningService(bridge: Bridge(database: database), queues: [])
        // Learned long enough ago to have expired (a machine up for at least a minute).
        let stale = MonotonicClock.seconds() - 60
        let count = 64
        for i in 0..<count {
            _ = database.learn(vlan: 1, mac: 0x0200_0000_0000 | UInt64(i), port: PortIndex(1), now: stale)
        }
        XCTAssertEqual(database.counters.entries, UInt64(count))

        let step = LearningService.agingInterval / Double(LearningService.agingSlices)
        var now = 1_000.0
        service.service(now: now)
        // 64 entries spread over the table's slots all lie in the first slice with a
        // probability of (1/agingSlices)^64: a turn that aged them all swept more than a slice.
        XCTAssertLessThan(database.counters.aged, UInt64(count), "one turn swept more than a slice")
        XCTAssertEqual(service.timeout(now: now) ?? -1, step, accuracy: 1e-9, "the next slice is due a slice's time later")
        // A turn before that (the doorbell, a control request) sweeps nothing more.
        let agedAfterOne = database.counters.aged
        service.service(now: now + step / 2)
        XCTAssertEqual(database.counters.aged, agedAfterOne)

        // The slices of one interval cover the table but for one slot per removal (the
        // database looks again at a slot an entry shifted into, and counts it): one more
        // slice sees the rest.
        for _ in 0..<LearningService.agingSlices {
            now += step
            service.service(now: now)
        }
        XCTAssertEqual(database.counters.aged, UInt64(count), "an interval and a slice cover every slot")
        XCTAssertEqual(database.counters.entries, 0)
    }
}
