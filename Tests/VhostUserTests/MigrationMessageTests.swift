import Model
import Packets
import Platform
import TestSupport
import VhostUser
import Virtio
import XCTest

/// The front-end's side of a live migration, message by message: the dirty log
/// (SET_LOG_BASE, VHOST_F_LOG_ALL, VHOST_VRING_F_LOG) and SEND_RARP, with what
/// a hostile front-end can send instead.
final class MigrationMessageTests: XCTestCase {
    private let logFlag: UInt32 = 1   // VHOST_VRING_F_LOG

    private func started(_ log: CapturedLog = CapturedLog()) throws -> (VhostDevice, MockFrontEnd) {
        let device = VhostDevice(name: "m0", queuePairs: 1, logger: log.logger)
        let fe = try MockFrontEnd(device: device)
        fe.setUp(protocolFeatures: [.replyAck, .status, .logShmfd, .rarp])
        return (device, fe)
    }

    /// A memfd log of `size` bytes at `offset`.
    private func logFile(size: UInt64, offset: UInt64 = 0) throws -> SharedMemory {
        try SharedMemory(length: Int(size + offset + 4095) / 4096 * 4096, name: "ferry-test-log")
    }

    /// Bytes that cover the mock front-end's RAM (0x4000_0000 + 8 MiB).
    private let coveringSize: UInt64 = (0x4000_0000 + (8 << 20)) / 4096 / 8

    func testLogAllAndLogShmfdAreOffered() {
        let device = VhostDevice(name: "m0", logger: CapturedLog().logger)
        XCTAssertNotEqual(device.offeredFeatures & VirtioNetFeatures.logAll.rawValue, 0)
        XCTAssertTrue(VhostDevice.offeredProtocolFeatures.contains([.logShmfd, .rarp]))
    }

    func testALogThatCoversMemoryIsMappedAndAnsweredWithAnEmptyReply() throws {
        let (device, fe) = try started()
        let file = try logFile(size: coveringSize, offset: 64)
        let outcome = fe.send(.setLogBase, .dirtyLog(size: coveringSize, offset: 64), fds: [file.fd.rawValue])
        XCTAssertEqual(outcome, .reply(MessageEncoder.reply(to: .setLogBase, payload: .none)))
        XCTAssertNotNil(device.dirtyLog)
        XCTAssertFalse(device.queues[0].isLogging, "not before VHOST_F_LOG_ALL")
        fe.send(.setFeatures, .u64(fe.features | VirtioNetFeatures.logAll.rawValue))
        XCTAssertTrue(device.queues[0].isLogging)
        XCTAssertTrue(device.queues[1].isLogging)
        fe.send(.setFeatures, .u64(fe.features))
        XCTAssertFalse(device.queues[0].isLogging, "logging stops with VHOST_F_LOG_ALL")
    }

    func testALogTooSmallForGuestMemoryIsRefusedAndTheOldOneDropped() throws {
        let log = CapturedLog()
        let (device, fe) = try started(log)
        let good = try logFile(size: coveringSize)
        fe.send(.setLogBase, .dirtyLog(size: coveringSize, offset: 0), fds: [good.fd.rawValue])
        XCTAssertNotNil(device.dirtyLog)
        let small = try logFile(size: coveringSize - 1)
        let outcome = fe.send(.setLogBase, .dirtyLog(size: coveringSize - 1, offset: 0), fds: [small.fd.rawValue])
        guard case .close = outcome else { return XCTFail("a refused log cannot be answered: \(outcome)") }
        XCTAssertNil(device.dirtyLog, "the front-end believes the old log was replaced")
        XCTAssertTrue(log.lines.contains { $0.contains("dirty log rejected") && $0.contains("memory region 0") }, "\(log.lines)")
    }

    func testHostileLogDescriptionsAreRefused() throws {
        let (device, fe) = try started()
        let file = try logFile(size: 4096)
        let event = try EventFD.create()
        let cases: [(VhostUserMessage.Payload, Int32, String)] = [
            (.dirtyLog(size: 0, offset: 0), file.fd.rawValue, "size 0"),
            (.dirtyLog(size: coveringSize, offset: 0), file.fd.rawValue, "file shorter than the log"),
            (.dirtyLog(size: 8, offset: UInt64.max - 2), file.fd.rawValue, "offset wraps"),
            (.dirtyLog(size: 8, offset: 0), event.rawValue, "an eventfd"),
        ]
        for (payload, fd, name) in cases {
            guard case .close = fe.send(.setLogBase, payload, fds: [fd]) else { return XCTFail(name) }
            XCTAssertNil(device.dirtyLog, name)
        }
    }

    func testSetLogBaseNeedsLogShmfd() throws {
        let device = VhostDevice(name: "m0", logger: CapturedLog().logger)
        let fe = try MockFrontEnd(device: device)
        fe.setUp()
        let file = try logFile(size: coveringSize)
        guard case .close = fe.send(.setLogBase, .dirtyLog(size: coveringSize, offset: 0), fds: [file.fd.rawValue]) else {
            return XCTFail("accepted without LOG_SHMFD")
        }
    }

    func testAUsedRingLogAddressPastTheLogIsRefused() throws {
        let (device, fe) = try started()
        let file = try logFile(size: coveringSize)
        fe.send(.setLogBase, .dirtyLog(size: coveringSize, offset: 0), fds: [file.fd.rawValue])
        func address(_ log: UInt64) -> VringAddress {
            VringAddress(index: 1, flags: logFlag, descUserAddr: fe.ram.frontEndAddress(fe.tx.descGPA).rawValue,
                         usedUserAddr: fe.ram.frontEndAddress(fe.tx.usedGPA).rawValue,
                         availUserAddr: fe.ram.frontEndAddress(fe.tx.availGPA).rawValue, logGuestAddr: log)
        }
        let past = fe.send(.setVringAddr, .vringAddress(address(coveringSize * 8 * 4096 - 8)), needReply: true)
        XCTAssertEqual(past, .reply(MessageEncoder.ack(to: VhostUserRequest.setVringAddr.rawValue, status: 1)))
        let wraps = fe.send(.setVringAddr, .vringAddress(address(UInt64.max - 100)), needReply: true)
        XCTAssertEqual(wraps, .reply(MessageEncoder.ack(to: VhostUserRequest.setVringAddr.rawValue, status: 1)))
        let fine = fe.send(.setVringAddr, .vringAddress(address(fe.tx.usedGPA)), needReply: true)
        XCTAssertEqual(fine, .reply(MessageEncoder.ack(to: VhostUserRequest.setVringAddr.rawValue, status: 0)))
        XCTAssertFalse(device.isBroken)
    }

    func testAMemoryTableTheLogDoesNotCoverIsRefusedWhileLogging() throws {
        let (device, fe) = try started()
        let file = try logFile(size: coveringSize)
        fe.send(.setLogBase, .dirtyLog(size: coveringSize, offset: 0), fds: [file.fd.rawValue])
        fe.send(.setFeatures, .u64(fe.features | VirtioNetFeatures.logAll.rawValue))
        let region = fe.ram.regions[0]
        let moved = MemoryRegionInfo(guestPhysAddr: 0x8000_0000, size: region.size, userAddr: region.frontEndAddress,
                                     mmapOffset: 0)
        let outcome = fe.send(.setMemTable, .memoryTable([moved]), fds: [fe.ram.shared.fd.rawValue], needReply: true)
        XCTAssertEqual(outcome, .reply(MessageEncoder.ack(to: VhostUserRequest.setMemTable.rawValue, status: 1)))
        XCTAssertEqual(device.memory?.regions.first?.guestPhysicalAddress, region.guestPhysicalAddress)
    }

    func testSendRARPQueuesOneAnnouncementOfTheGuestsAddress() throws {
        let (device, fe) = try started()
        XCTAssertFalse(device.hasPendingAnnouncement)
        fe.send(.sendRARP, .u64(0x0000_5634_1200_5452))
        XCTAssertTrue(device.hasPendingAnnouncement)
        XCTAssertEqual(device.takeAnnouncement(), MACAddress(0x52, 0x54, 0x00, 0x12, 0x34, 0x56))
        XCTAssertNil(device.takeAnnouncement(), "sent once")
        let group = fe.send(.sendRARP, .u64(0x0000_5634_1200_5401), needReply: true)
        XCTAssertEqual(group, .reply(MessageEncoder.ack(to: VhostUserRequest.sendRARP.rawValue, status: 1)))
        XCTAssertFalse(device.hasPendingAnnouncement)
    }

    func testTheAnnouncementIsABroadcastRARPRequestFromTheGuest() {
        let frame = UnsafeMutableRawPointer.allocate(byteCount: ReverseARPAnnouncement.frameLength, alignment: 8)
        defer { frame.deallocate() }
        ReverseARPAnnouncement.write(announcing: MACAddress(0x52, 0x54, 0, 0x12, 0x34, 0x56), into: frame)
        let bytes = Array(UnsafeRawBufferPointer(start: frame, count: ReverseARPAnnouncement.frameLength))
        let mac: [UInt8] = [0x52, 0x54, 0, 0x12, 0x34, 0x56]
        XCTAssertEqual(Array(bytes[0..<6]), [UInt8](repeating: 0xff, count: 6))
        XCTAssertEqual(Array(bytes[6..<12]), mac)
        XCTAssertEqual(Array(bytes[12..<22]), [0x80, 0x35, 0, 1, 0x08, 0x00, 6, 4, 0, 3])
        XCTAssertEqual(Array(bytes[22..<28]), mac)
        XCTAssertEqual(Array(bytes[28..<32]), [0, 0, 0, 0])
        XCTAssertEqual(Array(bytes[32..<38]), mac)
        XCTAssertEqual(Array(bytes[38...]), [UInt8](repeating: 0, count: 22))
    }

    func testAResetForgetsTheLogAndTheAnnouncement() throws {
        let (device, fe) = try started()
        let file = try logFile(size: coveringSize)
        fe.send(.setLogBase, .dirtyLog(size: coveringSize, offset: 0), fds: [file.fd.rawValue])
        fe.send(.sendRARP, .u64(0x0000_5634_1200_5452))
        device.reset(reason: "test")
        XCTAssertNil(device.dirtyLog)
        XCTAssertFalse(device.hasPendingAnnouncement)
    }
}
