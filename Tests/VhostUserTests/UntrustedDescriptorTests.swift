import Foundation
import Glibc
import Platform
import TestSupport
import VhostUser
import XCTest

/// Every descriptor a front-end sends is checked before Ferry reads, writes,
/// polls or maps it, and none can make the control thread wait.
final class UntrustedDescriptorTests: XCTestCase {
    private func runningDevice(_ log: CapturedLog, protocolFeatures: VhostUserProtocolFeatures = [.replyAck, .status])
        throws -> (VhostDevice, MockFrontEnd)
    {
        let device = VhostDevice(name: "t0", queuePairs: 1, logger: log.logger)
        let fe = try MockFrontEnd(device: device)
        fe.setUp(protocolFeatures: protocolFeatures)
        XCTAssertTrue(device.isRunning)
        return (device, fe)
    }

    /// Descriptors of every kind but an eventfd, each with something to read,
    /// so that a read of any of them would not fail but return data.
    private func wrongKinds() throws -> [(String, Int32)] {
        var ends: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&ends), 0)
        _ = write(ends[1], "x", 1)
        let (mine, theirs) = try UnixSocket.pair()
        _ = write(theirs, "x", 1)
        let file = try SharedMemory(length: 4096, name: "ferry-test-not-an-eventfd")
        let owned = [ends[0], ends[1], mine, theirs, dup(file.fd.rawValue)]
        addTeardownBlock { for fd in owned { close(fd) } }
        return [("a pipe", ends[0]), ("a socket", mine), ("a regular file", owned[4])]
    }

    func testKickCallAndErrThatAreNoEventFDsAreRefusedWithAFailingAck() throws {
        for (kind, fd) in try wrongKinds() {
            for (request, role) in [(VhostUserRequest.setVringKick, "kick"), (.setVringCall, "call"), (.setVringErr, "err")] {
                let log = CapturedLog()
                let (device, fe) = try runningDevice(log)
                let outcome = fe.send(request, .vringFile(index: 1, hasFD: true), fds: [fd], needReply: true)
                XCTAssertEqual(outcome, .reply(MessageEncoder.ack(to: request.rawValue, status: 1)), "\(role) as \(kind)")
                let refusals = log.lines.filter { $0.contains("refused") }
                XCTAssertEqual(refusals.count, 1, "one log line per refusal: \(log.lines)")
                XCTAssertTrue(refusals.first?.contains("\(role) descriptor for queue 1 is \(kind), not an eventfd") ?? false,
                              "\(refusals)")
                XCTAssertFalse(device.isBroken, "a refused message changes nothing")
                XCTAssertTrue(device.queues[1].isRunning)
            }
        }
    }

    func testAWrongKickWithoutReplyAckClosesTheConnection() throws {
        let (_, fe) = try runningDevice(CapturedLog(), protocolFeatures: [.status])
        let (kind, fd) = try wrongKinds()[0]
        guard case .close(let why) = fe.send(.setVringKick, .vringFile(index: 1, hasFD: true), fds: [fd]) else {
            return XCTFail("a kick that is \(kind) must close a connection without REPLY_ACK")
        }
        XCTAssertTrue(why.contains("not an eventfd"), why)
    }

    /// An eventfd made without EFD_NONBLOCK and never signalled: the device
    /// drains a kick descriptor when its ring starts and while it watches it,
    /// and a blocking read would never return.
    func testABlockingKickEventFDNeverBlocksTheControlThread() throws {
        let log = CapturedLog()
        let (device, fe) = try runningDevice(log)
        let blocking = try EventFD.create(nonBlocking: false)
        let done = expectation(description: "the device answered")
        nonisolated(unsafe) let frontEnd = fe
        let worker = Thread {
            frontEnd.send(.getVringBase, .vringState(index: 0, num: 0))
            frontEnd.send(.setVringKick, .vringFile(index: 0, hasFD: true), fds: [blocking.rawValue])
            frontEnd.send(.setVringEnable, .vringState(index: 0, num: 1))
            device.checkHealth(now: MonotonicClock.now())
            done.fulfill()
        }
        worker.start()
        wait(for: [done], timeout: 5)
        XCTAssertTrue(device.queues[0].isRunning, "\(log.lines)")
        XCTAssertEqual(EventFD.drain(blocking.rawValue), 0)
    }

    /// Ferry writes call descriptors from a worker; a blocking one is made
    /// non-blocking, so a counter parked at its maximum cannot stall that write.
    func testABlockingCallEventFDIsMadeNonBlocking() throws {
        let (device, fe) = try runningDevice(CapturedLog())
        let blocking = try EventFD.create(nonBlocking: false)
        fe.send(.setVringCall, .vringFile(index: 0, hasFD: true), fds: [blocking.rawValue])
        XCTAssertNotEqual(fcntl(blocking.rawValue, F_GETFL) & O_NONBLOCK, 0)
        // Counter at 2^64 - 2, the most it holds: one more would wait for a reader.
        var most = UInt64.max - 1
        XCTAssertEqual(withUnsafeBytes(of: &most) { write(blocking.rawValue, $0.baseAddress, 8) }, 8)
        EventFD.signal(device.queues[0].callFD)
        XCTAssertEqual(EventFD.drain(blocking.rawValue), UInt64.max - 1)
    }

    func testAMemoryTableWhoseFileIsAPipeIsRefused() throws {
        let log = CapturedLog()
        let (device, fe) = try runningDevice(log)
        let (_, pipeEnd) = try wrongKinds()[0]
        let region = fe.ram.regions[0]
        let outcome = fe.send(.setMemTable, .memoryTable([MemoryRegionInfo(
            guestPhysAddr: region.guestPhysicalAddress, size: region.size, userAddr: region.frontEndAddress, mmapOffset: 0)]),
            fds: [pipeEnd], needReply: true)
        XCTAssertEqual(outcome, .reply(MessageEncoder.ack(to: VhostUserRequest.setMemTable.rawValue, status: 1)))
        XCTAssertTrue(log.lines.contains { $0.contains("memory region 0 comes with a pipe, not a regular file") }, "\(log.lines)")
        XCTAssertTrue(device.isRunning, "the old table stays")
    }
}
