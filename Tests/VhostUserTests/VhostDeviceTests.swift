import Packets
import Platform
import TestSupport
import VhostUser
import Virtio
import XCTest

final class VhostDeviceTests: XCTestCase {
    func makeDevice(_ log: CapturedLog = CapturedLog()) -> VhostDevice {
        VhostDevice(name: "t0", queuePairs: 1, logger: log.logger)
    }

    func testSetUpRunsBothQueuesOnlyAfterDriverOK() throws {
        let device = makeDevice()
        let fe = try MockFrontEnd(device: device)
        fe.send(.setOwner)
        fe.send(.setFeatures, .u64(fe.features))
        fe.send(.setProtocolFeatures, .u64(VhostUserProtocolFeatures.status.rawValue))
        fe.setUp()
        XCTAssertTrue(device.queues[0].isRunning)
        XCTAssertTrue(device.queues[1].isRunning)
        XCTAssertEqual(device.queues[0].configuration.headerLength, 12)
        XCTAssertTrue(device.queues[0].configuration.mergeableBuffers)
    }

    func testQueuesWaitForDriverOKWhenStatusIsNegotiated() throws {
        let device = makeDevice()
        let fe = try MockFrontEnd(device: device)
        fe.setUp()
        fe.send(.setStatus, .u64(0))
        XCTAssertFalse(device.isRunning, "status 0 resets the device")
        fe.setUp()
        XCTAssertTrue(device.isRunning)
    }

    func testGetVringBaseStopsTheRingAndReportsTheNextIndex() throws {
        let device = makeDevice()
        let fe = try MockFrontEnd(device: device)
        fe.setUp()
        for _ in 0..<3 { fe.tx.offerTX(frame: ethernetFrame(length: 60)) }
        let batch = PacketBatch(capacity: 32)
        XCTAssertEqual(device.queues[1].pull(into: batch, counters: QueueCounters()), 3)
        device.queues[1].release()
        let outcome = fe.send(.getVringBase, .vringState(index: 1, num: 0))
        XCTAssertEqual(outcome, .reply(MessageEncoder.reply(to: .getVringBase, payload: .vringState(index: 1, num: 3))))
        XCTAssertFalse(device.queues[1].isRunning)
    }

    func testBadRingSizeBreaksTheDeviceAndFailsTheReplyAck() throws {
        let log = CapturedLog()
        let device = makeDevice(log)
        let fe = try MockFrontEnd(device: device)
        fe.setUp()
        let outcome = fe.send(.setVringNum, .vringState(index: 0, num: 100), needReply: true)
        XCTAssertEqual(outcome, .reply(MessageEncoder.ack(to: VhostUserRequest.setVringNum.rawValue, status: 1)))
        XCTAssertTrue(device.isBroken)
        XCTAssertFalse(device.isRunning)
        XCTAssertEqual(log.lines.filter { $0.contains("device broken") }.count, 1)
        let status = fe.send(.getStatus)
        XCTAssertEqual(status, .reply(MessageEncoder.reply(to: .getStatus, payload: .u64(15 | 64))))
        for size: UInt32 in [0, 65536, 32769] {
            fe.send(.setVringNum, .vringState(index: 1, num: size))
        }
        XCTAssertEqual(log.lines.filter { $0.contains("device broken") }.count, 1, "one line per device, not per fault")
    }

    func testRingsOutsideSharedMemoryBreakTheDeviceWithAHint() throws {
        let log = CapturedLog()
        let device = makeDevice(log)
        let fe = try MockFrontEnd(device: device)
        fe.setUp()
        fe.send(.setVringEnable, .vringState(index: 0, num: 0))
        fe.send(.setVringAddr, .vringAddress(VringAddress(index: 0, flags: 0, descUserAddr: 0x1000, usedUserAddr: 0x2000,
                                                          availUserAddr: 0x3000, logGuestAddr: 0)))
        fe.send(.setVringEnable, .vringState(index: 0, num: 1))
        XCTAssertTrue(device.isBroken)
        XCTAssertTrue(device.brokenReason?.contains("share=on") ?? false, device.brokenReason ?? "")
    }

    func testRequestsForQueuesThatDoNotExistAreRefusedWithoutBreaking() throws {
        let device = makeDevice()
        let fe = try MockFrontEnd(device: device)
        fe.setUp()
        let outcome = fe.send(.setVringNum, .vringState(index: 7, num: 256), needReply: true)
        XCTAssertEqual(outcome, .reply(MessageEncoder.ack(to: VhostUserRequest.setVringNum.rawValue, status: 1)))
        XCTAssertFalse(device.isBroken)
        XCTAssertTrue(device.isRunning)
    }

    func testFeaturesThatWereNotOfferedAreRefused() throws {
        let device = makeDevice()
        let fe = try MockFrontEnd(device: device)
        fe.send(.setProtocolFeatures, .u64(VhostUserProtocolFeatures.replyAck.rawValue))
        let outcome = fe.send(.setFeatures, .u64(1 << 33), needReply: true)  // ACCESS_PLATFORM is not offered
        XCTAssertEqual(outcome, .reply(MessageEncoder.ack(to: VhostUserRequest.setFeatures.rawValue, status: 1)))
    }

    /// A port's `offloads=off` withholds the offloads: not offered, refused when set.
    func testWithheldOffloadsAreNeitherOfferedNorTaken() throws {
        let device = VhostDevice(name: "w", logger: CapturedLog().logger,
                                 withheldFeatures: VirtioNetFeatures.segmentationOffloads)
        XCTAssertEqual(device.offeredFeatures & VirtioNetFeatures.segmentationOffloads.rawValue, 0)
        XCTAssertNotEqual(device.offeredFeatures & VirtioNetFeatures.csum.rawValue, 0)
        XCTAssertNotEqual(makeDevice().offeredFeatures & VirtioNetFeatures.guestTSO4.rawValue, 0, "offered by default")
        let fe = try MockFrontEnd(device: device)
        fe.send(.setProtocolFeatures, .u64(VhostUserProtocolFeatures.replyAck.rawValue))
        let outcome = fe.send(.setFeatures, .u64(VirtioNetFeatures.version1.rawValue | VirtioNetFeatures.hostTSO4.rawValue),
                              needReply: true)
        XCTAssertEqual(outcome, .reply(MessageEncoder.ack(to: VhostUserRequest.setFeatures.rawValue, status: 1)))
    }

    func testAGetRequestThatCannotBeAnsweredClosesTheConnection() throws {
        let device = makeDevice()
        let fe = try MockFrontEnd(device: device)
        if case .close = fe.send(.getVringBase, .vringState(index: 9, num: 0)) {} else {
            XCTFail("a GET for a queue that does not exist must not leave the front-end waiting")
        }
    }

    func testResetForgetsTheBrokenStateAndTheRings() throws {
        let device = makeDevice()
        let fe = try MockFrontEnd(device: device)
        fe.setUp()
        fe.send(.setVringNum, .vringState(index: 0, num: 3))
        XCTAssertTrue(device.isBroken)
        device.reset(reason: "test")
        XCTAssertFalse(device.isBroken)
        XCTAssertNil(device.memory)
        let again = try MockFrontEnd(device: device)
        again.setUp()
        XCTAssertTrue(device.isRunning)
    }

    func testADataPathFaultMarksTheDeviceBrokenOnce() throws {
        let log = CapturedLog()
        let device = makeDevice(log)
        let fe = try MockFrontEnd(device: device)
        fe.setUp()
        fe.tx.writeDescriptor(0, address: 0xdead_0000_0000, length: 64, flags: 0)
        fe.tx.makeAvailable(0)
        let batch = PacketBatch(capacity: 32)
        _ = device.queues[1].pull(into: batch, counters: QueueCounters())
        let error = try XCTUnwrap(device.queues[1].error)
        device.markBroken("queue 1: \(error)", fromDataPath: true)
        device.markBroken("again", fromDataPath: true)
        XCTAssertFalse(device.isRunning)
        XCTAssertEqual(log.lines.filter { $0.contains("device broken") }.count, 1)
        XCTAssertTrue(device.brokenReason?.contains("outside guest memory") ?? false)
    }

    func testMemoryTableReplacedWhileRunningRestartsTheRings() throws {
        let device = makeDevice()
        let fe = try MockFrontEnd(device: device)
        fe.setUp()
        let region = fe.ram.regions[0]
        fe.send(.setMemTable, .memoryTable([MemoryRegionInfo(guestPhysAddr: region.guestPhysicalAddress, size: region.size,
                                                             userAddr: region.frontEndAddress, mmapOffset: 0)]),
                fds: [fe.ram.shared.fd.rawValue])
        XCTAssertTrue(device.isRunning)
        fe.tx.offerTX(frame: ethernetFrame(length: 60))
        XCTAssertEqual(device.queues[1].pull(into: PacketBatch(capacity: 8), counters: QueueCounters()), 1)
    }

    func testAKickedRXRingThatNeverMovesIsCalledUnsharedMemory() throws {
        let log = CapturedLog()
        let device = makeDevice(log)
        let fe = try MockFrontEnd(device: device)
        EventFD.signal(fe.kicks[0])  // QEMU hands over kick descriptors already signalled
        fe.setUp()
        EventFD.signal(fe.kicks[1])  // an idle TX ring kicked at start is fine
        device.checkHealth(now: MonotonicClock.now() + 10)
        XCTAssertFalse(device.isBroken)
        let t = MonotonicClock.now()
        device.checkHealth(now: t + 100)
        XCTAssertFalse(device.isBroken, "a ring never kicked since it started is not judged")
        EventFD.signal(fe.kicks[0])
        device.checkHealth(now: t + 101)
        device.checkHealth(now: t + 102)
        XCTAssertFalse(device.isBroken, "within the grace period after the kick")
        device.checkHealth(now: t + 104)
        XCTAssertTrue(device.isBroken)
        XCTAssertTrue(device.brokenReason?.contains("share=on") ?? false)
    }

    func testAnRXRingWithBuffersIsTrusted() throws {
        let device = makeDevice()
        let fe = try MockFrontEnd(device: device)
        fe.setUp()
        fe.rx.offerRX(bufferSizes: [2048])
        EventFD.signal(fe.kicks[0])
        device.checkHealth(now: MonotonicClock.now() + 10)
        XCTAssertFalse(device.isBroken)
    }

    func testARefusalTheFrontEndCannotBeToldOfClosesTheConnection() throws {
        let device = makeDevice()
        let fe = try MockFrontEnd(device: device)
        fe.setUp(protocolFeatures: [.status])  // no REPLY_ACK
        if case .close = fe.send(.setVringNum, .vringState(index: 7, num: 256)) {} else {
            XCTFail("without REPLY_ACK a refused message must close the connection")
        }
        let acked = try MockFrontEnd(device: makeDevice())
        acked.setUp()
        if case .close = acked.send(.getVringBase, .vringState(index: 9, num: 0), needReply: true) {} else {
            XCTFail("a GET is never answered with a REPLY_ACK in place of its payload")
        }
    }
}
