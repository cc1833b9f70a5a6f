import Platform
import XCTest

@testable import Engine

/// When a worker woken by a TAP moves to the sender's CPU, and when it stays.
final class SenderFollowingTests: XCTestCase {
    let both = CPUSet([0, 1])
    let long = SenderFollowing.minimumSleepNanoseconds

    func testAnUnpinnedWorkerMovesToTheSendersCPU() {
        XCTAssertEqual(SenderFollowing.destination(pinned: false, allowed: both, sender: 1, slept: long), 1)
        XCTAssertEqual(SenderFollowing.destination(pinned: false, allowed: both, sender: 0, slept: 5 * long), 0)
        XCTAssertTrue(SenderFollowing.moves(to: 1, from: 0))
        XCTAssertTrue(SenderFollowing.moves(to: 0, from: 1))
    }

    func testAWorkerAlreadyOnTheSendersCPUStays() {
        // Decided at the wake-up without asking where the worker is; the move finds it there already.
        XCTAssertEqual(SenderFollowing.destination(pinned: false, allowed: both, sender: 1, slept: long), 1)
        XCTAssertFalse(SenderFollowing.moves(to: 1, from: 1))
    }

    func testAPinnedWorkerNeverFollows() {
        XCTAssertNil(SenderFollowing.destination(pinned: true, allowed: both, sender: 1, slept: long))
    }

    func testWithoutTheProgramOrBeforeTheFirstFrameTheWorkerStays() {
        // No program (not loaded) and a map not yet written both read as no sender.
        XCTAssertNil(SenderFollowing.destination(pinned: false, allowed: both, sender: nil, slept: long))
    }

    func testAnUnknownPlacementKeepsTheWorkerWhereItIs() {
        XCTAssertNil(SenderFollowing.destination(pinned: false, allowed: nil, sender: 1, slept: long))
        XCTAssertFalse(SenderFollowing.moves(to: 1, from: nil))
    }

    func testASenderOutsideTheWorkersCPUsIsNotFollowed() {
        // Ferry started under `taskset -c 0`: a sender on CPU 1 does not take the worker there.
        XCTAssertNil(SenderFollowing.destination(pinned: false, allowed: CPUSet([0]), sender: 1, slept: long))
        XCTAssertEqual(SenderFollowing.destination(pinned: false, allowed: CPUSet([0, 70]), sender: 70, slept: long), 70)
    }

    func testAShortSleepDoesNotMoveTheWorker() {
        // A stream's sender writes again within microseconds: moving then would put both on one CPU.
        XCTAssertNil(SenderFollowing.destination(pinned: false, allowed: both, sender: 1, slept: long - 1))
    }

    func testTheCallingThreadMayRunWhereItRuns() throws {
        let allowed = try XCTUnwrap(ThreadAffinity.allowed(), "sched_getaffinity failed")
        let here = try XCTUnwrap(ThreadAffinity.currentCPU(), "sched_getcpu failed")
        XCTAssertTrue(allowed.contains(here), "CPU \(here) not in the thread's own affinity mask")
        // A move and the allowed set given back, as a worker does it (here onto the CPU it is on).
        XCTAssertNil(ThreadAffinity.pin(to: here))
        XCTAssertEqual(ThreadAffinity.allowed(), CPUSet([here]))
        XCTAssertNil(ThreadAffinity.allow(allowed))
        XCTAssertEqual(ThreadAffinity.allowed(), allowed)
        XCTAssertNotNil(ThreadAffinity.pin(to: -1), "a CPU that cannot exist is refused")
        XCTAssertFalse(CPUSet([3]).contains(2))
        XCTAssertFalse(CPUSet([3]).contains(-1))
        XCTAssertFalse(CPUSet([3]).contains(1024))
        XCTAssertTrue(CPUSet([]).isEmpty)
    }
}
