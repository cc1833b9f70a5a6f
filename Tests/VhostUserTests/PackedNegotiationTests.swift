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

    /// A migration turns logging on while the guest runs on packed rings: the
    /// rings take the log, keep running, and mark the ring's pages (the used
    /// descriptors lie in the descriptor ring), even where the ring's log address
    /// (which a packed ring does not use) leaves no room for a split used ring.
    func testDirtyLoggingReachesThePackedRingsAndMarksTheirWrites() throws {
        let device = VhostDevice(name: "vm", logger: CapturedLog().logger)
        let frontEnd = try MockFrontEnd(device: device, packed: true)
        frontEnd.setUp(protocolFeatures: [.replyAck, .status, .logShmfd])
        let packed = try XCTUnwrap(frontEnd.packed)
        let end = frontEnd.ram.regions.map { $0.guestPhysicalAddress + $0.size }.max()!
        let logBytes = end / DirtyPageLog.pageSize / 8
        let logFile = try SharedMemory(length: Int(logBytes + 4095) / 4096 * 4096, name: "ferry-test-log")
        frontEnd.send(.setLogBase, .dirtyLog(size: logBytes, offset: 0), fds: [logFile.fd.rawValue])
        let logging = frontEnd.features | VirtioNetFeatures.ringPacked.rawValue | VirtioNetFeatures.logAll.rawValue
        XCTAssertEqual(frontEnd.send(.setFeatures, .u64(logging), needReply: true),
                       .reply(MessageEncoder.ack(to: VhostUserRequest.setFeatures.rawValue, status: 0)))
        XCTAssertEqual(frontEnd.send(.setVringAddr, .vringAddress(VringAddress(
            index: 1, flags: 1, descUserAddr: frontEnd.ram.frontEndAddress(packed.tx.ringGPA).rawValue,
            usedUserAddr: frontEnd.ram.frontEndAddress(packed.tx.deviceEventGPA).rawValue,
            availUserAddr: frontEnd.ram.frontEndAddress(packed.tx.driverEventGPA).rawValue,
            logGuestAddr: end - 4)), needReply: true),
                       .reply(MessageEncoder.ack(to: VhostUserRequest.setVringAddr.rawValue, status: 0)))
        XCTAssertTrue(device.packedQueues[0].isLogging && device.packedQueues[1].isLogging)
        XCTAssertTrue(device.packedQueues[0].isRunning && device.packedQueues[1].isRunning, "the guest goes on")
        let log = try XCTUnwrap(device.dirtyLog)
        let ringPage = packed.tx.ringGPA / DirtyPageLog.pageSize
        XCTAssertTrue(log.isMarked(page: packed.tx.deviceEventGPA / DirtyPageLog.pageSize),
                      "the restarted ring asked the driver not to kick, in the device's event structure")
        XCTAssertNotEqual(packed.tx.deviceEventGPA / DirtyPageLog.pageSize, ringPage)
        XCTAssertFalse(log.isMarked(page: ringPage), "no used descriptor written yet")
        packed.tx.offerTX(frame: ethernetFrame(length: 64))
        XCTAssertEqual(device.transmitQueue(0).pull(into: PacketBatch(capacity: 8), counters: QueueCounters()), 1)
        device.transmitQueue(0).release()
        XCTAssertEqual(packed.tx.usedEntries().count, 1)
        XCTAssertTrue(log.isMarked(page: ringPage), "the used descriptor's page")
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
