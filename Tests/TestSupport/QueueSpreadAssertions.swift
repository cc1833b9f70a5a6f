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

/// A two-queue port fed 64 UDP flows through `peer`: every frame pulled once from one queue
/// or the other (`assertEachFrameOnceOnTwoQueues`), then queue 1 transmits a frame that
/// `peer` receives. The port is reached through closures, so a TAP and a packet port both
/// fit; `afterPull` runs between the two halves, with the batch, for a kind's own checks.
public func assertTwoQueuesCarryFlowsBothWays(peer: PacketSocket, timeout: Double, descriptor: (Int) -> Int32,
                                              pull: (Int, PacketBatch) -> Int, release: (Int) -> Void,
                                              push: (Int, PacketBatch) -> Void, counters: [QueueCounters],
                                              afterPull: (PacketBatch) -> Void = { _ in },
                                              file: StaticString = #filePath, line: UInt = #line) throws {
    let frames = (0..<64).map { udpFrame(sourcePort: 5000 + UInt16($0), size: 80) }
    for frame in frames { try peer.send(frame) }

    let batch = PacketBatch(capacity: 64)
    let perQueue = pullFromQueues(2, expecting: frames.count, timeout: timeout, into: batch,
                                  descriptor: descriptor, pull: pull, release: release)
    afterPull(batch)
    assertEachFrameOnceOnTwoQueues(perQueue, frames: frames, counters: counters, file: file, line: line)

    let arena = FrameArena()
    batch.reset()
    arena.append(frames[0], cuts: [20], to: batch)
    push(1, batch)
    XCTAssertEqual(counters[1].snapshot.txPackets, 1, "queue 1 transmits too", file: file, line: line)
    XCTAssertEqual(try peer.receive(timeout: 2), frames[0], file: file, line: line)
}
