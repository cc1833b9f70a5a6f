import Glibc
import Packets
import Platform
import TestSupport
import VhostUser
import Virtio
import XCTest

/// ADD_MEM_REG and REM_MEM_REG (VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS), as QEMU sends them
/// when a DIMM is plugged into or unplugged from a running guest: the rings keep going, the
/// table changes only while the data path is parked, and what a region took (its mapping and
/// its file) is given back when it goes. And what a hostile front-end may try instead.
final class MemoryHotplugTests: XCTestCase {
    static let mib = 1 << 20

    /// A front-end on two-region RAM whose memory table holds the first region only; the TX
    /// ring's buffers lie in the second, which `addRegion(1)` plugs in.
    func makeFrontEnd(_ log: CapturedLog, gate: DataPathGate = UngatedDataPath()) throws -> MockFrontEnd {
        let device = VhostDevice(name: "t0", queuePairs: 1, gate: gate, logger: log.logger)
        let fe = try MockFrontEnd(device: device, ram: try GuestRAM.twoRegions(size: 8 * Self.mib))
        fe.setUp(tableRegions: 1)
        XCTAssertTrue(device.isRunning)
        return fe
    }

    static let ack = MessageEncoder.ack(to: VhostUserRequest.addMemReg.rawValue, status: 0)
    static let nack = MessageEncoder.ack(to: VhostUserRequest.addMemReg.rawValue, status: 1)
    static let remAck = MessageEncoder.ack(to: VhostUserRequest.remMemReg.rawValue, status: 0)
    static let remNack = MessageEncoder.ack(to: VhostUserRequest.remMemReg.rawValue, status: 1)

    func pullOne(_ fe: MockFrontEnd) -> Int {
        fe.tx.offerTX(frame: ethernetFrame(length: 60))
        let n = fe.device.queues[1].pull(into: PacketBatch(capacity: 8), counters: QueueCounters())
        fe.device.queues[1].release()
        return n
    }

    func testAPluggedRegionCarriesFramesAndUnpluggingItGivesBackItsMappingAndFile() throws {
        let log = CapturedLog()
        let fe = try makeFrontEnd(log)
        let before = ProcessResources.now()

        XCTAssertEqual(fe.addRegion(1), .reply(Self.ack))
        XCTAssertEqual(fe.device.memory?.regions, fe.ram.regions)
        XCTAssertTrue(fe.device.isRunning, "the rings restart on the new table")
        XCTAssertEqual(pullOne(fe), 1, "a frame in the plugged region is read")
        let plugged = ProcessResources.now()
        XCTAssertEqual(plugged.descriptors, before.descriptors + 1, "the region's file is kept open")
        XCTAssertGreaterThan(plugged.mappings, before.mappings)

        // Back to the first region only, as after the DIMM's unplug (the guest gave its pages
        // back first, so no ring or buffer points there any more).
        fe.tx.offerTX(frame: ethernetFrame(length: 60))
        let head = fe.device.queues[1].pull(into: PacketBatch(capacity: 8), counters: QueueCounters())
        XCTAssertEqual(head, 1)
        fe.device.queues[1].release()
        XCTAssertEqual(fe.removeRegion(1), .reply(Self.remAck))
        XCTAssertEqual(fe.device.memory?.regions, [fe.ram.regions[0]])
        XCTAssertTrue(fe.device.isRunning)
        XCTAssertFalse(fe.device.isBroken)
        let after = ProcessResources.now()
        XCTAssertEqual(after.descriptors, before.descriptors, "REM_MEM_REG closes the region's file")
        XCTAssertEqual(after.mappings, before.mappings, "REM_MEM_REG unmaps the region")
        XCTAssertEqual(log.lines.filter { $0.contains("region") && $0.contains("added") }.count, 1, "\(log.lines)")
        XCTAssertEqual(log.lines.filter { $0.contains("region") && $0.contains("removed") }.count, 1, "\(log.lines)")
    }

    /// A front-end that removes the region a buffer still points into: the next pull finds the
    /// buffer outside guest memory and stops the queue with a typed error (the worker then
    /// breaks the device); nothing reads the unmapped pages.
    func testABufferInARemovedRegionStopsTheQueueInsteadOfReadingUnmappedMemory() throws {
        let log = CapturedLog()
        let fe = try makeFrontEnd(log)
        XCTAssertEqual(fe.addRegion(1), .reply(Self.ack))
        XCTAssertEqual(fe.removeRegion(1), .reply(Self.remAck))
        fe.tx.offerTX(frame: ethernetFrame(length: 60))
        XCTAssertEqual(fe.device.queues[1].pull(into: PacketBatch(capacity: 8), counters: QueueCounters()), 0)
        let error = try XCTUnwrap(fe.device.queues[1].error)
        XCTAssertTrue("\(error)".contains("outside guest memory"), "\(error)")
        fe.device.markBroken("queue 1: \(error)", fromDataPath: true)
        XCTAssertTrue(fe.device.isBroken)
    }

    /// A front-end that removes the region its rings live in: they cannot restart on the
    /// smaller table, so the device breaks with the reason, and the region is unmapped all
    /// the same (no ring keeps the old table alive).
    func testRemovingTheRegionTheRingsLiveInBreaksTheDeviceAndStillUnmapsIt() throws {
        let log = CapturedLog()
        let fe = try makeFrontEnd(log)
        let before = ProcessResources.now()
        XCTAssertEqual(fe.addRegion(1), .reply(Self.ack))
        XCTAssertEqual(fe.removeRegion(0), .reply(Self.remAck), "the table itself is valid")
        XCTAssertTrue(fe.device.isBroken)
        XCTAssertFalse(fe.device.isRunning)
        XCTAssertTrue(fe.device.brokenReason?.contains("is not in shared memory") ?? false,
                      fe.device.brokenReason ?? "not broken")
        XCTAssertEqual(log.lines.filter { $0.contains("device broken") }.count, 1)
        XCTAssertEqual(fe.device.memory?.regions, [fe.ram.regions[1]])
        XCTAssertEqual(ProcessResources.now().descriptors, before.descriptors, "region 0's file went, region 1's came")
        for q in fe.device.queues { XCTAssertFalse(q.isRunning) }
        // The driver resets the device and sets it up again on a good table: it forwards again.
        fe.send(.setStatus, .u64(0))
        fe.setUp(tableRegions: 2)
        XCTAssertFalse(fe.device.isBroken)
        XCTAssertEqual(pullOne(fe), 1)
    }

    /// The table changes only inside a pause of the data path, and the rings restart on it in
    /// that same pause: no pause ends with the rings stopped, since a worker let go then would
    /// drop what arrives for the guest (`not_ready`; seen as a ping lost under a real plug).
    func testTheTableChangesOnlyWhileTheDataPathIsParkedAndTheRingsNeverStopBetweenPauses() throws {
        let log = CapturedLog()
        let gate = RecordingGate()
        let fe = try makeFrontEnd(log, gate: gate)
        gate.device = fe.device
        for step in [{ fe.addRegion(1) }, { fe.removeRegion(1) }] {
            let memoryBefore = fe.device.memory.map(ObjectIdentifier.init)
            gate.pauses.removeAll()
            _ = step()
            let memoryAfter = fe.device.memory.map(ObjectIdentifier.init)
            XCTAssertNotEqual(memoryBefore, memoryAfter)
            let swaps = gate.pauses.filter { $0.memoryBefore != $0.memoryAfter }
            XCTAssertEqual(swaps.count, 1, "one pause swaps the table")
            XCTAssertEqual(swaps.first?.memoryBefore, memoryBefore)
            XCTAssertEqual(swaps.first?.memoryAfter, memoryAfter)
            XCTAssertEqual(gate.pauses.filter { !$0.ringsRunningAfter }.count, 0,
                           "a pause left the rings stopped for the worker: \(gate.pauses)")
            XCTAssertTrue(fe.device.queues.allSatisfy { $0.isRunning })
        }
    }

    // MARK: - A hostile front-end

    func testAnOverlappingRegionIsRefusedAndTheDeviceKeepsForwarding() throws {
        let log = CapturedLog()
        let fe = try makeFrontEnd(log)
        let before = ProcessResources.now()
        var overlapping = MockFrontEnd.message(fe.ram.regions[1])
        overlapping.guestPhysAddr = fe.ram.regions[0].guestPhysicalAddress + 4096
        overlapping.userAddr = 0x7a00_0000_0000
        let outcome = fe.send(.addMemReg, .memoryRegion(overlapping), fds: [fe.ram.shared.fd.rawValue], needReply: true)
        XCTAssertEqual(outcome, .reply(Self.nack))
        XCTAssertEqual(log.lines.filter { $0.contains("ADD_MEM_REG refused") && $0.contains("overlaps") }.count, 1,
                       "\(log.lines)")
        XCTAssertFalse(fe.device.isBroken)
        XCTAssertEqual(fe.device.memory?.regions, [fe.ram.regions[0]])
        XCTAssertEqual(ProcessResources.now().descriptors, before.descriptors, "the refused region's file is closed")
        XCTAssertEqual(ProcessResources.now().mappings, before.mappings)
        XCTAssertTrue(fe.device.queues[0].isRunning && fe.device.queues[1].isRunning)
    }

    func testMoreRegionsThanTheSlotsOfferedAreRefused() throws {
        let log = CapturedLog()
        let fe = try makeFrontEnd(log)
        let slots = fe.send(.getMaxMemSlots)
        XCTAssertEqual(slots, .reply(MessageEncoder.reply(to: .getMaxMemSlots, payload: .u64(UInt64(GuestMemory.maxRegions)))))
        let page = UInt64(4096)
        let file = try SharedMemory(length: GuestMemory.maxRegions * Int(page), name: "ferry-test-slots")
        let before = ProcessResources.now()
        // One slot is taken by the table: fill the rest, 4 KiB each, far from the RAM.
        for i in 1..<GuestMemory.maxRegions {
            let r = MemoryRegionInfo(guestPhysAddr: 0x1_0000_0000 + UInt64(i) * page, size: page,
                                     userAddr: 0x6000_0000_0000 + UInt64(i) * page, mmapOffset: UInt64(i) * page)
            XCTAssertEqual(fe.send(.addMemReg, .memoryRegion(r), fds: [file.fd.rawValue], needReply: true),
                           .reply(Self.ack), "slot \(i)")
        }
        let oneTooMany = MemoryRegionInfo(guestPhysAddr: 0x2_0000_0000, size: page, userAddr: 0x6100_0000_0000, mmapOffset: 0)
        XCTAssertEqual(fe.send(.addMemReg, .memoryRegion(oneTooMany), fds: [file.fd.rawValue], needReply: true),
                       .reply(Self.nack))
        XCTAssertEqual(log.lines.filter { $0.contains("ADD_MEM_REG refused") && $0.contains("at most 32") }.count, 1,
                       "\(log.lines)")
        XCTAssertEqual(fe.device.memory?.regions.count, GuestMemory.maxRegions)
        XCTAssertTrue(fe.device.isRunning)
        for i in 1..<GuestMemory.maxRegions {
            let r = MemoryRegionInfo(guestPhysAddr: 0x1_0000_0000 + UInt64(i) * page, size: page,
                                     userAddr: 0x6000_0000_0000 + UInt64(i) * page, mmapOffset: UInt64(i) * page)
            XCTAssertEqual(fe.send(.remMemReg, .memoryRegion(r), needReply: true), .reply(Self.remAck), "slot \(i)")
        }
        XCTAssertEqual(ProcessResources.now().descriptors, before.descriptors)
        XCTAssertEqual(ProcessResources.now().mappings, before.mappings)
    }

    func testRemovingARegionThatDoesNotExistIsRefused() throws {
        let log = CapturedLog()
        let fe = try makeFrontEnd(log)
        // Region 1 was never added; region 0 with another size is not region 0.
        XCTAssertEqual(fe.removeRegion(1), .reply(Self.remNack))
        var resized = MockFrontEnd.message(fe.ram.regions[0])
        resized.size /= 2
        XCTAssertEqual(fe.send(.remMemReg, .memoryRegion(resized), needReply: true), .reply(Self.remNack))
        XCTAssertEqual(log.lines.filter { $0.contains("REM_MEM_REG refused") && $0.contains("no memory region") }.count, 2,
                       "\(log.lines)")
        XCTAssertFalse(fe.device.isBroken)
        XCTAssertTrue(fe.device.isRunning)
        XCTAssertEqual(fe.device.memory?.regions, [fe.ram.regions[0]])
    }

    func testARegionPastTheEndOfItsFileIsRefused() throws {
        let log = CapturedLog()
        let fe = try makeFrontEnd(log)
        let before = ProcessResources.now()
        let fileSize = UInt64(fe.ram.shared.length)
        var tooBig = MockFrontEnd.message(fe.ram.regions[1])
        tooBig.size = fileSize          // from the middle of the file, twice what is left
        var pastTheEnd = MockFrontEnd.message(fe.ram.regions[1])
        pastTheEnd.mmapOffset = fileSize  // starts where the file ends
        for r in [tooBig, pastTheEnd] {
            XCTAssertEqual(fe.send(.addMemReg, .memoryRegion(r), fds: [fe.ram.shared.fd.rawValue], needReply: true),
                           .reply(Self.nack))
        }
        XCTAssertEqual(log.lines.filter { $0.contains("ADD_MEM_REG refused") && $0.contains("bytes of its file") }.count, 2,
                       "\(log.lines)")
        XCTAssertFalse(fe.device.isBroken)
        XCTAssertEqual(fe.device.memory?.regions, [fe.ram.regions[0]])
        XCTAssertEqual(ProcessResources.now().descriptors, before.descriptors)
        XCTAssertEqual(ProcessResources.now().mappings, before.mappings)
    }

    func testARegionWhoseDescriptorIsNotAFileIsRefused() throws {
        let log = CapturedLog()
        let fe = try makeFrontEnd(log)
        let outcome = fe.send(.addMemReg, .memoryRegion(MockFrontEnd.message(fe.ram.regions[1])), fds: [fe.kicks[0]],
                              needReply: true)
        XCTAssertEqual(outcome, .reply(Self.nack))
        XCTAssertEqual(log.lines.filter { $0.contains("ADD_MEM_REG refused") && $0.contains("not a regular file") }.count, 1,
                       "\(log.lines)")
        XCTAssertTrue(fe.device.isRunning)
    }
}

/// A gate that records, for each pause, the device's memory table before and after the
/// change and whether any ring ran when the change was done.
final class RecordingGate: DataPathGate, @unchecked Sendable {
    struct Pause {
        var memoryBefore: ObjectIdentifier?
        var memoryAfter: ObjectIdentifier?
        /// Whether every ring ran when the worker was let go.
        var ringsRunningAfter: Bool
    }

    weak var device: VhostDevice?
    var pauses: [Pause] = []

    func whilePaused(_ change: () -> Void) {
        let before = device?.memory.map(ObjectIdentifier.init)
        change()
        pauses.append(Pause(memoryBefore: before, memoryAfter: device?.memory.map(ObjectIdentifier.init),
                            ringsRunningAfter: device?.queues.allSatisfy { $0.isRunning } ?? false))
    }
}

/// This process's descriptors and mappings of the test guests' memfds (the test's own
/// RAM and the device's view of it), counted from /proc/self. Only those: the allocator maps and
/// unmaps anonymous memory as it likes, and ports other tests left running map their own memfds
/// (a virtio-user port reconnecting maps `ferry-virtio-user` while this test counts).
struct ProcessResources {
    var descriptors: Int
    var mappings: Int

    static func now() -> ProcessResources {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.filter {
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)"))?
                .contains("memfd:ferry-test-guest") ?? false
        }.count ?? -1
        let maps = (try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8))?
            .split(separator: "\n").filter { $0.contains("/memfd:ferry-test-guest") }.count ?? -1
        return ProcessResources(descriptors: fds, mappings: maps)
    }
}
