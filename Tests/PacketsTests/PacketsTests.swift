import Model
import Packets
import XCTest

final class PacketBatchTests: XCTestCase {
    func testAppendAndResetKeepTheArraysInStep() {
        let batch = PacketBatch(capacity: 4, segmentsPerFrame: 2)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
        defer { buffer.deallocate() }
        batch.append(base: buffer, length: 60, token: 7)
        batch.append(base: buffer + 4, length: 40, token: 9)
        XCTAssertEqual(batch.count, 2)
        XCTAssertEqual(batch.segmentCount, 2)
        XCTAssertEqual(batch.segments(of: 1).lowerBound, 1)
        XCTAssertEqual(batch.token(of: 1), 9)
        XCTAssertEqual(batch.totalBytes, 100)
        XCTAssertEqual(batch.room, 2)
        batch.limit = 2
        XCTAssertTrue(batch.isFull)
        batch.reset()
        XCTAssertEqual(batch.count, 0)
        XCTAssertEqual(batch.limit, 4)
        XCTAssertEqual(batch.freeSegments, 8)
    }
}

final class QueueCountersTests: XCTestCase {
    func testSnapshotsAddUpAndNameTheirDrops() {
        let a = QueueCounters()
        let b = QueueCounters()
        a.received(packets: 3, bytes: 180)
        a.sent(packets: 2, bytes: 120)
        a.dropped(.noRxBuffer, 5)
        b.dropped(.noRxBuffer)
        b.dropped(.deviceBroken, 2)
        let sum = a.snapshot + b.snapshot
        XCTAssertEqual(sum.rxPackets, 3)
        XCTAssertEqual(sum.txBytes, 120)
        XCTAssertEqual(sum.drops, [.noRxBuffer: 6, .deviceBroken: 2])
        XCTAssertEqual(sum.totalDrops, 8)
        XCTAssertEqual(Set(DropReason.allCases.map(\.name)).count, DropReason.allCases.count, "names are unique")
    }
}

final class MACAddressTests: XCTestCase {
    func testParsing() {
        XCTAssertEqual(MACAddress("02:00:00:00:00:01")?.description, "02:00:00:00:00:01")
        XCTAssertEqual(MACAddress("ff-ff-ff-ff-ff-ff"), .broadcast)
        XCTAssertTrue(MACAddress("01:00:5e:00:00:01")!.isMulticast)
        XCTAssertEqual(MACAddress("52-54-00-AB-cd-0F")?.description, "52:54:00:ab:cd:0f")
        // The last four were accepted until the control-request fuzz target found them.
        for bad in ["", "02:00:00:00:00", "02:00:00:00:00:0g", "020:00:00:00:00:01", "02:00:00:00:00:01:02",
                    "52-54-00-12-34--30", ":02:00:00:00:00:01", "02:00:00:00:00:01:", "+2:00:00:00:00:01"] {
            XCTAssertNil(MACAddress(bad), bad)
        }
    }
}
