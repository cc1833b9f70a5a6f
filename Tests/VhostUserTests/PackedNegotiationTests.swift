import Glibc
import Packets
import Platform
import TestSupport
import VhostUser
import Virtio
import XCTest

/// A front-end that negotiates VIRTIO_F_RING_PACKED: the device starts its
/// packed rings, reads ring sizes and bases as the packed layout has them, and
/// a front-end that does not keeps split rings.
final class PackedNegotiationTests: XCTestCase {
    private func device(packed: Bool) throws -> (VhostDevice, MockFrontEnd) {
        let device = VhostDevice(name: "vm", logger: CapturedLog().logger)
        let frontEnd = try MockFrontEnd(device: device, packed: packed)
        frontEnd.setUp()
        return (device, frontEnd)
    }

    func testRingPackedIsOfferedAndStartsThePackedRings() throws {
        let (device, frontEnd) = try device(packed: true)
        XCTAssertNotEqual(device.offeredFeatures & VirtioNetFeatures.ringPacked.rawValue, 0, "offered by default")
        XCTAssertTrue(device.packedRings)
        XCTAssertTrue(device.packedQueues[0].isRunning && device.packedQueues[1].isRunning)
        XCTAssertFalse(device.queues[0].isRunning || device.queues[1].isRunning, "the split rings stay stopped")
        guard case .packed = device.transmitQueue(0) else { return XCTFail("the data path sees the split ring") }

        let packed = try XCTUnwrap(frontEnd.packed)
        packed.tx.offerTX(frame: ethernetFrame(length: 64))
        let batch = PacketBatch(capacity: 8)
        XCTAssertEqual(device.transmitQueue(0).pull(into: batch, counters: QueueCounters()), 1)
        device.transmitQueue(0).release()
        XCTAssertEqual(packed.tx.usedEntries().count, 1)

        // GET_VRING_BASE: position 1, both wrap counters still 1, in both halves.
        XCTAssertEqual(frontEnd.send(.getVringBase, .vringState(index: 1, num: 0)),
                       .reply(MessageEncoder.reply(to: .getVringBase, payload: .vringState(index: 1, num: 0x8001_8001))))
        XCTAssertFalse(device.packedQueues[1].isRunning)
    }

    /// Until packed rings mark the dirty log, a migration of a packed-ring guest is refused
    /// (QEMU waits for this reply when it turns logging on) instead of copying stale pages.
    func testDirtyLoggingIsRefusedOnPackedRings() throws {
        let log = CapturedLog()
        let device = VhostDevice(name: "vm", logger: log.logger)
        let frontEnd = try MockFrontEnd(device: device, packed: true)
        frontEnd.setUp()
        let logging = frontEnd.features | VirtioNetFeatures.ringPacked.rawValue | VirtioNetFeatures.logAll.rawValue
        XCTAssertEqual(frontEnd.send(.setFeatures, .u64(logging), needReply: true),
                       .reply(MessageEncoder.ack(to: VhostUserRequest.setFeatures.rawValue, status: 1)))
        XCTAssertFalse(device.features.contains(.logAll))
        XCTAssertEqual(log.lines.filter { $0.contains("not supported on packed rings") }.count, 1, "\(log.lines)")
        XCTAssertTrue(device.packedQueues[0].isRunning && device.packedQueues[1].isRunning, "the guest goes on")
    }

    func testPackedRingSizesNeedNoPowerOfTwoButSplitOnesDo() throws {
        let (packedDevice, packedFrontEnd) = try device(packed: true)
        packedFrontEnd.send(.setVringNum, .vringState(index: 0, num: 6))
        XCTAssertNil(packedDevice.brokenReason)
        XCTAssertEqual(packedDevice.packedQueues[0].configuration.size, 6)
        packedFrontEnd.send(.setVringNum, .vringState(index: 0, num: 32769))
        XCTAssertNotNil(packedDevice.brokenReason)

        let (splitDevice, splitFrontEnd) = try device(packed: false)
        XCTAssertFalse(splitDevice.packedRings)
        guard case .split = splitDevice.receiveQueue(0) else { return XCTFail("a split front-end gets packed rings") }
        splitFrontEnd.send(.setVringNum, .vringState(index: 0, num: 6))
        XCTAssertNotNil(splitDevice.brokenReason)
    }

    func testAPackedRingBaseCarriesItsWrapCountersAndSplitOnesFitSixteenBits() throws {
        let (packedDevice, packedFrontEnd) = try device(packed: true)
        XCTAssertEqual(packedFrontEnd.send(.setVringBase, .vringState(index: 0, num: 0x0005_0005), needReply: true),
                       .reply(MessageEncoder.ack(to: VhostUserRequest.setVringBase.rawValue, status: 0)))
        XCTAssertEqual(packedDevice.packedQueues[0].baseIndex, 0x0005_0005)
        let (_, splitFrontEnd) = try device(packed: false)
        XCTAssertEqual(splitFrontEnd.send(.setVringBase, .vringState(index: 0, num: 0x0005_0005), needReply: true),
                       .reply(MessageEncoder.ack(to: VhostUserRequest.setVringBase.rawValue, status: 1)))
    }
}
