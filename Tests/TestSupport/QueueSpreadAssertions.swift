import Packets
import XCTest

/// What a port with two receive queues (a multiqueue TAP, a packet fanout
/// group) must show after `frames` of many flows came in: every frame pulled
/// exactly once, from one queue or the other, both queues used, and each
/// queue's counter equal to what was pulled from it.
public func assertEachFrameOnceOnTwoQueues(_ perQueue: [[[UInt8]]], frames: [[UInt8]], counters: [QueueCounters],
                                           file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(Set(perQueue[0] + perQueue[1]), Set(frames), file: file, line: line)
    XCTAssertEqual(perQueue[0].count + perQueue[1].count, frames.count, "each frame once", file: file, line: line)
    XCTAssertGreaterThan(perQueue[0].count, 0, file: file, line: line)
    XCTAssertGreaterThan(perQueue[1].count, 0, file: file, line: line)
    for q in 0..<2 {
        XCTAssertEqual(counters[q].snapshot.rxPackets, UInt64(perQueue[q].count), file: file, line: line)
    }
}
