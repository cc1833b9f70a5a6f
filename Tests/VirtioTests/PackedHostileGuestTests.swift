import Glibc
import Packets
import Platform
import TestSupport
import Virtio
import XCTest

/// A guest that breaks the packed ring's rules (virtio 1.2 §2.8): each case
/// stops the queue with the same typed errors as the split ring's
/// (HostileGuestTests), forwards nothing and leaves later calls inert — or,
/// where the rules leave the device a safe choice, is served without harm.
final class PackedHostileGuestTests: XCTestCase {
    private final class Guest {
        let ram: GuestRAM
        let ring: MockPackedRing
        let queue: PackedVirtqueue
        let batch = PacketBatch(capacity: 32)
        let counters = QueueCounters()

        init(size: UInt16 = 256, mergeable: Bool = false) throws {
            ram = try GuestRAM.oneRegion()
            (ring, queue) = try PackedVirtqueue.started(ram, size: size, mergeable: mergeable)
        }

        var end: UInt64 { ram.base + ram.regions[0].size }

        func buffer(_ count: Int) -> UInt64 {
            let gpa = ring.allocateBuffer(count)
            ram.write([UInt8](repeating: 0x5A, count: count), at: gpa)
            return gpa
        }

        /// An indirect table at a fresh buffer, returned as (address, byte length).
        func table(_ entries: [(address: UInt64, length: UInt32, flags: UInt16)]) -> (UInt64, UInt32) {
            let t = ring.allocateBuffer(16 * entries.count)
            for (i, e) in entries.enumerated() {
                ring.writeDescriptor(atGPA: t + UInt64(16 * i), address: e.address, length: e.length, id: 0, flags: e.flags)
            }
            return (t, UInt32(16 * entries.count))
        }

        /// One frame's worth of ordinary RX push.
        func push(_ length: Int = 1000) {
            let b = PacketBatch(capacity: 1)
            let store = FrameStore()
            store.append(ethernetFrame(length: length), to: b)
            queue.push(from: b, counters: counters)
        }
    }

    private let next = DescriptorFlag.next
    private let write = DescriptorFlag.write
    private let indirect = DescriptorFlag.indirect

    private func assertPullBreaks(_ g: Guest, _ expected: VirtqueueError, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(g.queue.pull(into: g.batch, counters: g.counters), 0, file: file, line: line)
        g.queue.release()
        XCTAssertFalse(g.queue.isRunning, "the queue stops", file: file, line: line)
        XCTAssertEqual(g.queue.error, expected, file: file, line: line)
        XCTAssertEqual(g.batch.count, 0, "nothing forwarded", file: file, line: line)
        XCTAssertEqual(g.queue.pull(into: g.batch, counters: g.counters), 0, "a stopped queue stays inert", file: file, line: line)
    }

    private func assertPushBreaks(_ g: Guest, _ expected: VirtqueueError, file: StaticString = #filePath, line: UInt = #line) {
        g.push()
        XCTAssertFalse(g.queue.isRunning, file: file, line: line)
        XCTAssertEqual(g.queue.error, expected, file: file, line: line)
        XCTAssertEqual(g.counters.snapshot.drops, [.deviceBroken: 1], file: file, line: line)
        XCTAssertEqual(g.ring.flags(0) & PackedFlag.used, 0, "nothing marked used", file: file, line: line)
    }

    // MARK: Addresses and lengths

    func testDescriptorAddressesOutsideMemory() throws {
        for (address, length) in [(UInt64(0x1000), UInt32(100)), (try Guest().end - 50, 100), (UInt64.max - 10, 100)] {
            let g = try Guest()
            g.ring.offerRaw([(address, length, 0, 0)])
            assertPullBreaks(g, .descriptorAddressInvalid(address: address, length: length))
        }
    }

    func testZeroLengthDescriptor() throws {
        let g = try Guest()
        g.ring.offerRaw([(g.buffer(12), 12, 0, next), (g.buffer(1), 0, 0, 0)])
        assertPullBreaks(g, .zeroLengthDescriptor)
    }

    func testFrameLongerThanMaxFrameLength() throws {
        let g = try Guest()
        let a = g.buffer(64)
        g.ring.offerRaw([(a, 60_000, 0, next), (a, 60_000, 0, 0)])
        assertPullBreaks(g, .frameTooLong(120_000))
    }

    func testDirectionsAreChecked() throws {
        let tx = try Guest()
        tx.ring.offerRaw([(tx.buffer(12), 12, 0, next), (tx.buffer(100), 100, 0, write)])
        assertPullBreaks(tx, .writableInDriverChain)
        let rx = try Guest()
        rx.ring.offerRaw([(rx.buffer(2000), 2000, 0, 0)])
        assertPushBreaks(rx, .readableInDeviceChain)
    }

    func testRuntFrameIsDroppedWithoutBreakingTheQueue() throws {
        let g = try Guest()
        g.ring.offerTX(frame: [1, 2, 3])
        XCTAssertEqual(g.queue.pull(into: g.batch, counters: g.counters), 1)
        XCTAssertEqual(g.counters.snapshot.drops, [.runt: 1])
        XCTAssertTrue(g.queue.isRunning)
        g.queue.release()
        XCTAssertEqual(g.ring.usedEntries().count, 1, "the chain goes back to the driver")
    }

    /// Bad single buffers behind good ones in one run (PackedVirtqueue+SingleBuffers.swift):
    /// the good ones are pulled (their used descriptors never published), the bad one is
    /// judged by the chain walk — a writable buffer stops the queue with its own error, a
    /// zero-length one too, a runt is dropped where it stands and the run goes on.
    func testBadBuffersInARunOfSingleBuffersAreJudgedByTheChainWalk() throws {
        for (bad, error) in [(write, VirtqueueError.writableInDriverChain), (UInt16(0), .zeroLengthDescriptor)] {
            let g = try Guest()
            for i in 0..<3 { g.ring.offerRaw([(g.buffer(76), 76, UInt16(i), 0)]) }
            g.ring.offerRaw([(g.buffer(76), bad == write ? 76 : 0, 3, bad)])
            g.ring.offerRaw([(g.buffer(76), 76, 4, 0)])
            XCTAssertEqual(g.queue.pull(into: g.batch, counters: g.counters), 3)
            XCTAssertEqual(g.batch.count, 3)
            XCTAssertFalse(g.queue.isRunning)
            XCTAssertEqual(g.queue.error, error)
            g.queue.release()
            XCTAssertEqual(g.ring.flags(0) & PackedFlag.used, 0, "nothing published")
        }
        let g = try Guest()
        g.ring.offerTX(frame: ethernetFrame(length: 60, seed: 1))
        g.ring.offerTX(frame: [1, 2, 3])
        g.ring.offerTX(frame: ethernetFrame(length: 60, seed: 2))
        XCTAssertEqual(g.queue.pull(into: g.batch, counters: g.counters), 3)
        XCTAssertEqual(g.batch.count, 2)
        XCTAssertEqual(g.counters.snapshot.drops, [.runt: 1])
        XCTAssertTrue(g.queue.isRunning)
    }

    /// A run stops at a descriptor marked for the wrong lap, as the chain walk does: what
    /// came before it is taken, nothing after it.
    func testARunOfSingleBuffersStopsAtADescriptorOfTheWrongLap() throws {
        let g = try Guest()
        for i in 0..<5 { g.ring.offerTX(frame: ethernetFrame(length: 60, seed: UInt8(i))) }
        g.ring.setFlags(2, PackedFlag.available(wrap: false))
        XCTAssertEqual(g.queue.pull(into: g.batch, counters: g.counters), 2)
        XCTAssertTrue(g.queue.isRunning)
    }

    // MARK: Chains, wrap counters and ids that lie

    func testAChainLongerThanTheRingRunsOntoItsOwnHead() throws {
        let g = try Guest(size: 4)
        let b = g.buffer(64)
        // Four descriptors, every one with NEXT: the fifth hop would be the head again.
        g.ring.offerRaw((0..<4).map { _ in (b, 16, 0, next) })
        assertPullBreaks(g, .chainTooLong(hops: 5))
    }

    func testAChainRunningIntoADescriptorOfTheWrongLap() throws {
        let g = try Guest()
        g.ring.offerRaw([(g.buffer(12), 12, 0, next), (g.buffer(100), 100, 0, 0)])
        // The driver says the second descriptor belongs to the next lap.
        g.ring.writeDescriptor(1, address: g.buffer(100), length: 100, id: 0, flags: PackedFlag.available(wrap: false))
        assertPullBreaks(g, .chainRunsIntoUnavailable(position: 1))
    }

    func testDescriptorsMarkedForTheWrongLapAreNotTaken() throws {
        let g = try Guest()
        // Flags of the second lap (or used ones) at the head: nothing is available yet.
        for flags in [PackedFlag.available(wrap: false), PackedFlag.avail | PackedFlag.used, 0] {
            g.ring.writeDescriptor(0, address: g.buffer(100), length: 100, id: 0, flags: flags)
            XCTAssertEqual(g.queue.pull(into: g.batch, counters: g.counters), 0)
            XCTAssertTrue(g.queue.isRunning)
        }
    }

    func testADriverThatReoffersSlotsStillInFlightGetsNoMoreThanARing() throws {
        let g = try Guest(size: 4)
        for _ in 0..<4 { g.ring.offerTX(frame: ethernetFrame(length: 64)) }
        XCTAssertEqual(g.queue.pull(into: g.batch, counters: g.counters), 4)
        // Not yet released; the driver marks the same slots available in the next lap anyway.
        for p in UInt16(0)..<4 { g.ring.setFlags(p, PackedFlag.available(wrap: false)) }
        XCTAssertEqual(g.queue.pull(into: g.batch, counters: g.counters), 0, "slots not given back are not read")
        XCTAssertEqual(g.queue.postedBuffers, 0)
        XCTAssertTrue(g.queue.isRunning)
        XCTAssertEqual(g.batch.count, 4)
        XCTAssertEqual(g.batch.frameBytes(3), ethernetFrame(length: 64), "the frames in flight were not overwritten by us")
    }

    func testIdsAreEchoedNeverUsedAsIndexes() throws {
        let g = try Guest()
        let frame = ethernetFrame(length: 64)
        let header = [UInt8](repeating: 0, count: 12)
        for id in [UInt16.max, 7, 7] {
            let b = g.buffer(76)
            g.ram.write(header + frame, at: b)
            g.ring.offerRaw([(b, 76, id, 0)])
        }
        XCTAssertEqual(g.queue.pull(into: g.batch, counters: g.counters), 3)
        g.queue.release()
        XCTAssertTrue(g.queue.isRunning)
        let ids = (UInt16(0)..<3).map { g.ram.pointer(g.ring.ringGPA + 16 * UInt64($0) + 12, count: 2).load(as: UInt16.self) }
        XCTAssertEqual(ids, [.max, 7, 7], "an id out of range, and one reused while in flight, go back as given")
    }

    // MARK: Indirect tables

    func testMalformedIndirectTables() throws {
        let cases: [(VirtqueueError, (Guest) -> Void)] = [
            (.indirectWithNext, { g in
                let (t, len) = g.table([(g.buffer(100), 100, 0)])
                g.ring.offerRaw([(t, len, 0, self.indirect | self.next), (g.buffer(10), 10, 0, 0)])
            }),
            (.nestedIndirect, { g in
                let (inner, innerLength) = g.table([(g.buffer(100), 100, 0)])
                let (t, len) = g.table([(inner, innerLength, self.indirect)])
                g.ring.offerRaw([(t, len, 0, self.indirect)])
            }),
            (.indirectLengthInvalid(24), { g in g.ring.offerRaw([(g.buffer(32), 24, 0, self.indirect)]) }),
            (.indirectLengthInvalid(0), { g in g.ring.offerRaw([(g.buffer(32), 0, 0, self.indirect)]) }),
            (.indirectLengthInvalid(16 * 32769), { g in g.ring.offerRaw([(g.buffer(32), 16 * 32769, 0, self.indirect)]) }),
            (.descriptorAddressInvalid(address: 0x1000, length: 32), { g in g.ring.offerRaw([(0x1000, 32, 0, self.indirect)]) }),
            (.zeroLengthDescriptor, { g in
                let (t, len) = g.table([(g.buffer(100), 100, 0), (g.buffer(10), 0, 0)])
                g.ring.offerRaw([(t, len, 0, self.indirect)])
            }),
        ]
        for (expected, offer) in cases {
            let g = try Guest()
            offer(g)
            assertPullBreaks(g, expected)
        }
    }

    // MARK: Start

    func testStartRefusesBadSizesAddressesAndBases() throws {
        let ram = try GuestRAM.oneRegion()
        let memory = try ram.makeGuestMemory()
        let ring = MockPackedRing(ram: ram, size: 8)
        func attempt(_ change: (PackedVirtqueue) -> Void) -> VirtqueueError? {
            let q = PackedVirtqueue(index: 0)
            ring.configure(q)
            change(q)
            do throws(VirtqueueError) { try q.start(memory: memory) } catch { return error }
            return nil
        }
        XCTAssertNil(attempt { _ in })
        XCTAssertNil(attempt { $0.configuration.size = 6 }, "§2.8 needs no power of two")
        XCTAssertEqual(attempt { $0.configuration.size = 0 }, .packedSizeInvalid(0))
        XCTAssertEqual(attempt { $0.configuration.size = 40000 }, .packedSizeInvalid(40000))
        XCTAssertEqual(attempt { $0.configuration.descAddress = FrontEndAddress(0x1000) }, .ringNotMapped(.descriptorRing, address: 0x1000))
        let odd = ram.frontEndAddress(ring.ringGPA + 8)
        XCTAssertEqual(attempt { $0.configuration.descAddress = odd }, .ringNotMapped(.descriptorRing, address: odd.rawValue))
        XCTAssertEqual(attempt { $0.configuration.availAddress = FrontEndAddress(2) }, .ringNotMapped(.driverEventArea, address: 2))
        XCTAssertEqual(attempt { $0.configuration.usedAddress = FrontEndAddress(4) }, .ringNotMapped(.deviceEventArea, address: 4))
        XCTAssertEqual(attempt { $0.baseIndex = 0x8008 }, .basePositionOutOfRange(8, size: 8))
    }

    // MARK: Seeded fuzz

    /// Random descriptors, flags, ids and tables written over live TX and RX rings
    /// between bursts: every call returns, every frame is forwarded or counted,
    /// every segment lies in guest memory, and each broken queue is restarted.
    func testSeededFuzzNeverEscapesGuestMemory() throws {
        var rng = SeededGenerator(seed: 0x00AC_4ED5_EED)
        let ram = try GuestRAM.oneRegion()
        let memory = try ram.makeGuestMemory()
        let low = UInt(bitPattern: try XCTUnwrap(memory.translate(GuestAddress(ram.base), length: 1)))
        let high = low + UInt(ram.regions[0].size)
        let store = FrameStore(capacity: 64 << 10)
        let template = ethernetFrame(length: 9000)
        var errors: [String: Int] = [:]
        var pulled = 0, delivered = 0
        let sizes: [UInt16] = [4, 7, 16, 64]
        for round in 0..<120 {
            let size = sizes[round % sizes.count]
            let tx = MockPackedRing(ram: ram, size: size, at: ram.base, buffers: ram.base + 0x10000 ..< ram.base + 0x200000)
            let rx = MockPackedRing(ram: ram, size: size, at: ram.base + 0x8000, buffers: ram.base + 0x200000 ..< ram.base + 0x400000)
            let txq = PackedVirtqueue(index: 1)
            let rxq = PackedVirtqueue(index: 0)
            tx.configure(txq)
            rx.configure(rxq, eventIndex: true, mergeableBuffers: round % 2 == 0)
            try txq.start(memory: memory)
            try rxq.start(memory: memory)
            for _ in 0..<200 where txq.isRunning || rxq.isRunning {
                for (ring, writable) in [(tx, false), (rx, true)] {
                    if Int.random(in: 0..<10, using: &rng) < 6 {
                        // The device gives back what it takes each burst; what it did not take is fair game.
                        if ring.outstanding + 3 > Int(ring.size) { ring.forgetOutstanding() }
                        if ring.outstanding + 3 <= Int(ring.size) {
                            if writable {
                                ring.offerRX(bufferSizes: (0..<Int.random(in: 1...3, using: &rng)).map { _ in Int.random(in: 1...2048, using: &rng) },
                                             indirect: Bool.random(using: &rng))
                            } else {
                                let length = Int.random(in: 1...3000, using: &rng)
                                ring.offerTX(frame: Array(template[..<length]), indirect: Bool.random(using: &rng))
                            }
                        }
                    } else {
                        // Scribble: any descriptor of the ring, or of a table somewhere, made of random fields.
                        let position = UInt16.random(in: 0..<ring.size, using: &rng)
                        let address = Bool.random(using: &rng) ? ring.allocateBuffer(64) : UInt64.random(in: 0...UInt64.max, using: &rng)
                        ring.writeDescriptor(position, address: address, length: UInt32.random(in: 0...70_000, using: &rng),
                                             id: UInt16.random(in: 0...UInt16.max, using: &rng),
                                             flags: UInt16.random(in: 0...UInt16.max, using: &rng))
                    }
                }
                let batch = PacketBatch(capacity: 16, segmentsPerFrame: 4)
                let consumed = txq.pull(into: batch, counters: QueueCounters())
                XCTAssertLessThanOrEqual(batch.count, consumed)
                for i in 0..<batch.count {
                    for s in batch.segmentRanges(i) {
                        let start = UInt(bitPattern: s.base)
                        XCTAssertTrue(start >= low && start + UInt(s.length) <= high, "segment outside guest memory")
                    }
                }
                pulled += batch.count
                txq.release()
                let outgoing = PacketBatch(capacity: 4)
                store.reset()
                let frames = Int.random(in: 1...4, using: &rng)
                for _ in 0..<frames { store.append(Array(template[..<Int.random(in: 14...9000, using: &rng)]), to: outgoing) }
                let counters = QueueCounters()
                rxq.push(from: outgoing, counters: counters)
                XCTAssertEqual(Int(counters.snapshot.txPackets + counters.snapshot.totalDrops), frames)
                delivered += Int(counters.snapshot.txPackets)
            }
            for q in [txq, rxq] {
                if let e = q.error { errors[Mirror(reflecting: e).children.first?.label ?? "\(e)", default: 0] += 1 }
                XCTAssertTrue(q.isRunning || q.error != nil, "stopped only with an error")
            }
        }
        XCTAssertGreaterThan(pulled, 500)
        XCTAssertGreaterThan(delivered, 500)
        XCTAssertGreaterThanOrEqual(errors.count, 6, "error kinds seen: \(errors.keys.sorted())")
    }
}
