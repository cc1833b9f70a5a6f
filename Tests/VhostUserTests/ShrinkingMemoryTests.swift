import Glibc
import Packets
import Platform
import TestSupport
import VhostUser
import XCTest

/// A front-end that truncates its guest-memory file under running rings breaks
/// its own device, with one line saying so; the process and other devices live.
final class ShrinkingMemoryTests: XCTestCase {
    func testAShrunkenFileBreaksItsDeviceBeforeAnyAccess() throws {
        let log = CapturedLog()
        let device = VhostDevice(name: "shrinks", queuePairs: 1, logger: log.logger)
        let fe = try MockFrontEnd(device: device)
        fe.setUp()
        let other = VhostDevice(name: "steady", queuePairs: 1, logger: log.logger)
        let steady = try MockFrontEnd(device: other)
        steady.setUp()
        XCTAssertEqual(ftruncate(fe.ram.shared.fd.rawValue, 0), 0)
        device.checkHealth(now: MonotonicClock.now())
        other.checkHealth(now: MonotonicClock.now())
        XCTAssertTrue(device.brokenReason?.contains("region 0 shrank under Ferry: its file has 0 bytes") ?? false,
                      device.brokenReason ?? "not broken")
        XCTAssertFalse(device.isRunning)
        XCTAssertEqual(log.lines.filter { $0.contains("device broken") }.count, 1)
        XCTAssertFalse(other.isBroken)
        steady.tx.offerTX(frame: ethernetFrame(length: 60))
        XCTAssertEqual(other.queues[1].pull(into: PacketBatch(capacity: 8), counters: QueueCounters()), 1)
    }

    func testAWorkerThatTouchesShrunkenMemoryLivesAndTheDeviceSaysWhy() throws {
        let log = CapturedLog()
        let device = VhostDevice(name: "shrinks", queuePairs: 1, logger: log.logger)
        let fe = try MockFrontEnd(device: device)
        fe.setUp()
        fe.tx.offerTX(frame: ethernetFrame(length: 60))
        XCTAssertEqual(ftruncate(fe.ram.shared.fd.rawValue, 0), 0)
        // The ring reads zeros now: an empty ring, not a dead process.
        XCTAssertEqual(device.queues[1].pull(into: PacketBatch(capacity: 8), counters: QueueCounters()), 0)
        device.checkHealth(now: MonotonicClock.now())
        XCTAssertTrue(device.brokenReason?.contains("raised SIGBUS") ?? false, device.brokenReason ?? "not broken")
        XCTAssertEqual(log.lines.filter { $0.contains("device broken") }.count, 1)
    }
}
