import Platform
import XCTest

/// The control loop sleeps until a client's deadline has passed, rather than
/// spinning through its last millisecond (a poll timeout truncated to whole
/// milliseconds was 0 for every turn of it: docs/PERFORMANCE.md, "Session 9:
/// every slow reply accounted for").
final class ControlLoopTests: XCTestCase {
    /// Wants attention once, `after` seconds from its creation; counts the turns
    /// the loop served it before then.
    final class Deadline: ControlLoopClient {
        let due: Double
        var turnsBefore = 0
        var reached = false
        init(after: Double) { due = MonotonicClock.now() + after }
        var pollDescriptors: [Int32] { [] }
        func timeout(now: Double) -> Double? { reached ? nil : max(0, due - now) }
        func service(now: Double) {
            if now >= due { reached = true } else { turnsBefore += 1 }
        }
    }

    func testAFractionalDeadlineIsSleptThroughNotSpunOn() {
        let loop = ControlLoop()
        // 2.5 ms: truncated, a 2 ms wait and then every turn of the last half millisecond a poll of 0.
        let client = Deadline(after: 0.0025)
        loop.add(client)
        var turns = 0
        while !client.reached && turns < 100_000 {
            loop.runOnce()
            turns += 1
        }
        XCTAssertTrue(client.reached)
        // One wait rounded up reaches it; a second turn is allowed for a wait a signal cut short.
        XCTAssertLessThanOrEqual(client.turnsBefore, 1, "the loop turned \(client.turnsBefore) times before the deadline")
    }
}
