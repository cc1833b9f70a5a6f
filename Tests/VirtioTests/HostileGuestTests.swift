import Glibc
import Packets
import Platform
import TestSupport
import Virtio
import XCTest

/// A guest that breaks the ring rules: each case stops the queue with its
/// exact error, forwards nothing, and leaves later calls inert.
final class HostileGuestTests: XCTestCase {
    private final class Guest {
        let ram: GuestRAM
        let ring: MockSplitRing
        let queue: SplitVirtqueue
        let batch = PacketBatch(capacity: 32)
        let counters = QueueCounters()

        init(ram: GuestRAM? = nil, size: UInt16 = 256, mergeable: Bool = false) throws {
            self.ram = try ram ?? GuestRAM.oneRegion()
            (ring, queue) = try SplitVirtqueue.started(self.ram, size: size, mergeable: mergeable)
        }

        var end: UInt64 { ram.base + ram.regions[0].size }

        /// A buffer in guest memory holding `count` bytes of a frame.
        func buffer(_ count: Int) -> UInt64 {
            let gpa = ring.allocateBuffer(count)
            ram.write([UInt8](repeating: 0x5A, count: count), at: gpa)
            return gpa
        }

        /// Writes the chain as given (indexes, flags, next) and makes `head` available.
        func offer(head: UInt16 = 0, _ descriptors: [(index: UInt16, address: UInt64, length: UInt32, flags: UInt16, next: UInt16)]) {
            for d in descriptors { ring.writeDescriptor(d.index, address: d.address, length: d.length, flags: d.flags, next: d.next) }
            ring.makeAvailable(head)
        }

        /// An indirect table at a fresh buffer, returned as (address, byte length).
        func table(_ entries: [(address: UInt64, length: UInt32, flags: UInt16, next: UInt16)]) -> (UInt64, UInt32) {
            let t = ring.allocateBuffer(16 * entries.count)
            for (i, e) in entries.enumerated() {
                ring.writeDescriptor(atGPA: t + UInt64(16 * i), address: e.address, length: e.length, flags: e.flags, next: e.next)
            }
            return (t, UInt32(16 * entries.count))
        }
    }

    private let next = DescriptorFlag.next
    private let write = DescriptorFlag.write
    private let indirect = DescriptorFlag.indirect

    /// Pulls, and checks the queue broke with `expected` and forwarded nothing.
    private func assertPullBreaks(_ g: Guest, _ expected: VirtqueueError, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(g.queue.pull(into: g.batch, counters: g.counters), 0, file: file, line: line)
        g.queue.release()
        XCTAssertFalse(g.queue.isRunning, "the queue stops", file: file, line: line)
        XCTAssertEqual(g.queue.error, expected, file: file, line: line)
        XCTAssertEqual(g.batch.count, 0, "nothing forwarded", file: file, line: line)
        XCTAssertEqual(g.counters.snapshot, CounterSnapshot(), file: file, line: line)
        assertStaysBroken(g, expected, file: file, line: line)
    }

    /// Pushes one frame, and checks the queue broke with `expected` and delivered nothing.
    private func assertPushBreaks(_ g: Guest, _ expected: VirtqueueError, file: StaticString = #filePath, line: UInt = #line) {
        let store = FrameStore()
        store.append(ethernetFrame(length: 1514), to: g.batch)
        g.queue.push(from: g.batch, counters: g.counters)
        XCTAssertFalse(g.queue.isRunning, "the queue stops", file: file, line: line)
        XCTAssertEqual(g.queue.error, expected, file: file, line: line)
        XCTAssertEqual(g.counters.snapshot, CounterSnapshot(drops: [.deviceBroken: 1]), "nothing delivered", file: file, line: line)
        g.batch.reset()
        assertStaysBroken(g, expected, file: file, line: line)
    }

    /// Later calls, even on a well-formed chain, neither walk nor publish anything.
    private func assertStaysBroken(_ g: Guest, _ expected: VirtqueueError, file: StaticString, line: UInt) {
        let availBefore = g.ring.availIndex
        g.ring.offerTX(frame: ethernetFrame(length: 64))
        g.ring.offerRX(bufferSizes: [2048])
        XCTAssertEqual(g.queue.pull(into: g.batch, counters: QueueCounters()), 0, file: file, line: line)
        g.queue.release()
        let counters = QueueCounters()
        let store = FrameStore()
        let batch = PacketBatch(capacity: 4)
        store.append(ethernetFrame(length: 64), to: batch)
        g.queue.push(from: batch, counters: counters)
        XCTAssertEqual(counters.snapshot, CounterSnapshot(drops: [.deviceBroken: 1]), file: file, line: line)
        XCTAssertEqual(g.batch.count, 0, file: file, line: line)
        XCTAssertEqual(g.ring.usedIndex, 0, "no used entry ever published", file: file, line: line)
        XCTAssertEqual(g.queue.error, expected, "the first error is kept", file: file, line: line)
        XCTAssertFalse(g.queue.isRunning, file: file, line: line)
        XCTAssertEqual(g.ring.availIndex, availBefore &+ 2, file: file, line: line)
    }

    // MARK: Descriptor buffers

    func testDescriptorAddressOutsideEveryRegion() throws {
        let g = try Guest()
        g.offer([(0, 0x1000, 100, 0, 0)])
        assertPullBreaks(g, .descriptorAddressInvalid(address: 0x1000, length: 100))

        let rx = try Guest()
        rx.offer([(0, 0x1000, 2048, write, 0)])
        assertPushBreaks(rx, .descriptorAddressInvalid(address: 0x1000, length: 2048))
    }

    func testDescriptorRunningPastTheEndOfMemory() throws {
        let g = try Guest()
        g.offer([(0, g.end - 10, 100, 0, 0)])
        assertPullBreaks(g, .descriptorAddressInvalid(address: g.end - 10, length: 100))

        let rx = try Guest()
        rx.offer([(0, rx.end - 10, 2048, write, 0)])
        assertPushBreaks(rx, .descriptorAddressInvalid(address: rx.end - 10, length: 2048))
    }

    func testDescriptorAddressPlusLengthWrapsTheAddressSpace() throws {
        let g = try Guest()
        g.offer([(0, UInt64.max - 10, 100, 0, 0)])
        assertPullBreaks(g, .descriptorAddressInvalid(address: UInt64.max - 10, length: 100))

        let rx = try Guest()
        rx.offer([(0, UInt64.max - 10, 2048, write, 0)])
        assertPushBreaks(rx, .descriptorAddressInvalid(address: UInt64.max - 10, length: 2048))
    }

    func testZeroLengthDescriptor() throws {
        let g = try Guest()
        g.offer([(0, g.buffer(100), 0, 0, 0)])
        assertPullBreaks(g, .zeroLengthDescriptor)

        // In the middle of a chain.
        let mid = try Guest()
        mid.offer([(0, mid.buffer(12), 12, next, 1), (1, mid.buffer(64), 0, next, 2), (2, mid.buffer(64), 64, 0, 0)])
        assertPullBreaks(mid, .zeroLengthDescriptor)

        let rx = try Guest()
        rx.offer([(0, rx.buffer(2048), 0, write, 0)])
        assertPushBreaks(rx, .zeroLengthDescriptor)
    }

    // MARK: Chain shape

    func testChainThatLoops() throws {
        let g = try Guest()
        g.offer([(0, g.buffer(12), 12, next, 1), (1, g.buffer(64), 64, next, 0)])
        assertPullBreaks(g, .chainTooLong(hops: 257))

        // A descriptor that is its own next. RX chains are walked only as far
        // as the frame needs, so the buffer is small enough to need every hop.
        let rx = try Guest()
        rx.offer([(0, rx.buffer(4), 4, write | next, 0)])
        assertPushBreaks(rx, .chainTooLong(hops: 257))
    }

    func testChainLongerThanTheRing() throws {
        let g = try Guest(size: 8)
        let chain = (0..<8).map { i in (UInt16(i), g.buffer(20), UInt32(20), next, UInt16((i + 1) % 8)) }
        g.offer(chain)
        assertPullBreaks(g, .chainTooLong(hops: 9))

        // The same inside an indirect table: its budget is the table's size.
        let t = try Guest()
        let (table, length) = t.table([(t.buffer(20), 20, next, 1), (t.buffer(20), 20, next, 2),
                                       (t.buffer(20), 20, next, 3), (t.buffer(20), 20, next, 0)])
        t.offer([(0, table, length, indirect, 0)])
        assertPullBreaks(t, .chainTooLong(hops: 5))
    }

    func testNextIndexBeyondTheRing() throws {
        let g = try Guest()
        g.offer([(0, g.buffer(12), 12, next, 256)])
        assertPullBreaks(g, .nextOutOfRange(256, size: 256))

        let rx = try Guest()
        rx.offer([(0, rx.buffer(12), 12, write | next, 0xFFFF)])
        assertPushBreaks(rx, .nextOutOfRange(0xFFFF, size: 256))

        // Inside an indirect table, next indexes that table.
        let t = try Guest()
        let (table, length) = t.table([(t.buffer(12), 12, next, 1), (t.buffer(64), 64, next, 2)])
        t.offer([(0, table, length, indirect, 0)])
        assertPullBreaks(t, .nextOutOfRange(2, size: 2))
    }

    func testHeadIndexBeyondTheRing() throws {
        let g = try Guest()
        g.ring.writeDescriptor(0, address: g.buffer(100), length: 100, flags: 0)
        g.ring.makeAvailable(256)
        assertPullBreaks(g, .headOutOfRange(256, size: 256))

        let rx = try Guest()
        rx.ring.makeAvailable(0xFFFF)
        assertPushBreaks(rx, .headOutOfRange(0xFFFF, size: 256))
    }

    // MARK: Indirect tables

    func testNestedIndirectTable() throws {
        let g = try Guest()
        let (inner, innerLength) = g.table([(g.buffer(100), 100, 0, 0)])
        let (outer, outerLength) = g.table([(inner, innerLength, indirect, 0)])
        g.offer([(0, outer, outerLength, indirect, 0)])
        assertPullBreaks(g, .nestedIndirect)
    }

    func testIndirectDescriptorWithNext() throws {
        let g = try Guest()
        let (table, length) = g.table([(g.buffer(100), 100, 0, 0)])
        g.offer([(0, table, length, indirect | next, 1), (1, g.buffer(100), 100, 0, 0)])
        assertPullBreaks(g, .indirectWithNext)
    }

    func testIndirectLengthNotAMultipleOf16() throws {
        let g = try Guest()
        let (table, _) = g.table([(g.buffer(100), 100, 0, 0), (g.buffer(100), 100, 0, 0)])
        g.offer([(0, table, 24, indirect, 0)])
        assertPullBreaks(g, .indirectLengthInvalid(24))
    }

    func testIndirectLengthZero() throws {
        let g = try Guest()
        let (table, _) = g.table([(g.buffer(100), 100, 0, 0)])
        g.offer([(0, table, 0, indirect, 0)])
        assertPullBreaks(g, .indirectLengthInvalid(0))
    }

    func testIndirectTableLargerThanAnyRing() throws {
        let g = try Guest()
        g.offer([(0, g.ram.base, 16 * 32769, indirect, 0)])
        assertPullBreaks(g, .indirectLengthInvalid(16 * 32769))
    }

    func testIndirectTableOutsideMemory() throws {
        let g = try Guest()
        g.offer([(0, 0x1000, 32, indirect, 0)])
        assertPullBreaks(g, .descriptorAddressInvalid(address: 0x1000, length: 32))

        let edge = try Guest()
        edge.offer([(0, edge.end - 16, 32, indirect, 0)])
        assertPullBreaks(edge, .descriptorAddressInvalid(address: edge.end - 16, length: 32))

        let rx = try Guest()
        rx.offer([(0, UInt64.max - 15, 32, indirect, 0)])
        assertPushBreaks(rx, .descriptorAddressInvalid(address: UInt64.max - 15, length: 32))
    }

    // MARK: Direction

    func testDeviceWritableDescriptorInATXChain() throws {
        let g = try Guest()
        g.offer([(0, g.buffer(100), 100, write, 0)])
        assertPullBreaks(g, .writableInDriverChain)

        let later = try Guest()
        later.offer([(0, later.buffer(12), 12, next, 1), (1, later.buffer(100), 100, write, 0)])
        assertPullBreaks(later, .writableInDriverChain)

        let t = try Guest()
        let (table, length) = t.table([(t.buffer(12), 12, next, 1), (t.buffer(100), 100, write, 0)])
        t.offer([(0, table, length, indirect, 0)])
        assertPullBreaks(t, .writableInDriverChain)
    }

    func testReadOnlyDescriptorInAnRXChain() throws {
        let g = try Guest()
        g.offer([(0, g.buffer(2048), 2048, 0, 0)])
        assertPushBreaks(g, .readableInDeviceChain)

        let later = try Guest()
        later.offer([(0, later.buffer(12), 12, write | next, 1), (1, later.buffer(2048), 2048, 0, 0)])
        assertPushBreaks(later, .readableInDeviceChain)
    }

    /// A bad chain behind good ones in one run of whole frames: the frames before it are
    /// written but never published, the queue stops, the rest are counted broken.
    func testABadChainInTheMiddleOfARunPublishesNothing() throws {
        let g = try Guest()
        for i in 0..<3 { g.offer(head: UInt16(i), [(UInt16(i), g.buffer(2048), 2048, write, 0)]) }
        g.offer(head: 3, [(3, g.buffer(2048), 2048, 0, 0)])
        g.offer(head: 4, [(4, g.buffer(2048), 2048, write, 0)])
        let store = FrameStore()
        for i in 0..<5 { store.append(ethernetFrame(length: 64, seed: UInt8(i)), to: g.batch) }
        g.queue.push(from: g.batch, counters: g.counters)
        XCTAssertFalse(g.queue.isRunning)
        XCTAssertEqual(g.queue.error, .readableInDeviceChain)
        XCTAssertEqual(g.counters.snapshot.drops, [.deviceBroken: 2])
        XCTAssertEqual(g.ring.usedIndex, 0, "nothing published")
    }

    /// A bad single buffer behind good ones in one run: the good ones are pulled (their used
    /// entries never published), the bad one stops the queue with its own error.
    func testABadBufferInARunOfSingleBuffersStopsTheQueueThere() throws {
        let g = try Guest()
        for i in 0..<3 { g.offer(head: UInt16(i), [(UInt16(i), g.buffer(76), 76, 0, 0)]) }
        g.offer(head: 3, [(3, g.buffer(76), 76, write, 0)])
        g.offer(head: 4, [(4, g.buffer(76), 76, 0, 0)])
        XCTAssertEqual(g.queue.pull(into: g.batch, counters: g.counters), 3)
        XCTAssertEqual(g.batch.count, 3)
        XCTAssertFalse(g.queue.isRunning)
        XCTAssertEqual(g.queue.error, .writableInDriverChain)
        g.queue.release()
        XCTAssertEqual(g.ring.usedIndex, 0, "nothing published")
    }

    // MARK: Avail ring

    func testAvailIndexJumpingByMoreThanTheRingSize() throws {
        let g = try Guest()
        g.ring.availIndex = 257
        assertPullBreaks(g, .availIndexJump(availIndex: 257, lastSeen: 0, size: 256))

        // Going backwards is a jump of nearly 2^16.
        let back = try Guest()
        back.ring.availIndex = 0xFFFF
        assertPullBreaks(back, .availIndexJump(availIndex: 0xFFFF, lastSeen: 0, size: 256))

        let rx = try Guest()
        rx.ring.availIndex = 300
        assertPushBreaks(rx, .availIndexJump(availIndex: 300, lastSeen: 0, size: 256))

        // Exactly a ring's worth is allowed.
        let full = try Guest(size: 4)
        for i in 0..<4 { full.ring.offerTX(frame: ethernetFrame(length: 64, seed: UInt8(i))) }
        XCTAssertEqual(full.queue.pull(into: full.batch, counters: full.counters), 4)
        XCTAssertTrue(full.queue.isRunning)
    }

    func testAvailIndexJumpAfterSomeTraffic() throws {
        let g = try Guest(size: 16)
        for _ in 0..<10 { g.ring.offerTX(frame: ethernetFrame(length: 64)) }
        XCTAssertEqual(g.queue.pull(into: g.batch, counters: g.counters), 10)
        g.queue.release()
        g.batch.reset()
        g.ring.availIndex = 10 + 17
        XCTAssertEqual(g.queue.pull(into: g.batch, counters: QueueCounters()), 0)
        XCTAssertFalse(g.queue.isRunning)
        XCTAssertEqual(g.queue.error, .availIndexJump(availIndex: 27, lastSeen: 10, size: 16))
        XCTAssertEqual(g.ring.usedIndex, 10)
    }

    // MARK: Ring configuration at start

    private func assertStartFails(_ expected: VirtqueueError, file: StaticString = #filePath, line: UInt = #line,
                                  _ change: (SplitVirtqueue, MockSplitRing) -> Void) throws {
        let ram = try GuestRAM.oneRegion()
        let ring = MockSplitRing(ram: ram, size: 256)
        let queue = SplitVirtqueue(index: 0)
        ring.configure(queue)
        change(queue, ring)
        XCTAssertThrowsError(try queue.start(memory: ram.makeGuestMemory()), file: file, line: line) {
            XCTAssertEqual($0 as? VirtqueueError, expected, file: file, line: line)
        }
        XCTAssertFalse(queue.isRunning, file: file, line: line)
        ring.offerTX(frame: ethernetFrame(length: 64))
        XCTAssertEqual(queue.pull(into: PacketBatch(capacity: 4), counters: QueueCounters()), 0, file: file, line: line)
        queue.release()
        XCTAssertEqual(ring.usedIndex, 0, file: file, line: line)
        XCTAssertEqual(ring.usedFlags, 0, "nothing written to an unvalidated ring", file: file, line: line)
    }

    func testRingSizeInvalidAtStart() throws {
        for size: UInt16 in [0, 3, 100, 40000, 0xFFFF] {
            try assertStartFails(.sizeInvalid(UInt32(size))) { q, _ in q.configuration.size = size }
        }
    }

    func testRingAddressesNotMappedAtStart() throws {
        try assertStartFails(.ringNotMapped(.descriptorTable, address: 0x1000)) { q, _ in
            q.configuration.descAddress = FrontEndAddress(0x1000)
        }
        try assertStartFails(.ringNotMapped(.availRing, address: 0x1000)) { q, _ in
            q.configuration.availAddress = FrontEndAddress(0x1000)
        }
        try assertStartFails(.ringNotMapped(.usedRing, address: 0x1000)) { q, _ in
            q.configuration.usedAddress = FrontEndAddress(0x1000)
        }
        // A guest-physical address where a front-end address belongs.
        try assertStartFails(.ringNotMapped(.descriptorTable, address: 0x4000_0000)) { q, r in
            q.configuration.descAddress = FrontEndAddress(r.descGPA)
        }
        // Starting inside memory but running past its end.
        let feEnd: UInt64 = 0x7f00_0000_0000 + (4 << 20)
        try assertStartFails(.ringNotMapped(.descriptorTable, address: feEnd - 16 * 255)) { q, _ in
            q.configuration.descAddress = FrontEndAddress(feEnd - 16 * 255)
        }
        try assertStartFails(.ringNotMapped(.availRing, address: feEnd - 6 - 2 * 255)) { q, _ in
            q.configuration.availAddress = FrontEndAddress(feEnd - 6 - 2 * 255)
        }
        try assertStartFails(.ringNotMapped(.usedRing, address: feEnd - 6 - 8 * 255)) { q, _ in
            q.configuration.usedAddress = FrontEndAddress(feEnd - 6 - 8 * 255)
        }
        try assertStartFails(.ringNotMapped(.usedRing, address: UInt64.max - 8)) { q, _ in
            q.configuration.usedAddress = FrontEndAddress(UInt64.max - 8)
        }
    }

    // MARK: Frame length

    func testFrameLongerThanMaxFrameLength() throws {
        // Five 16 KiB buffers pass the default 65,550-byte limit on the fifth.
        let g = try Guest()
        let chain = (0..<5).map { i in (UInt16(i), g.buffer(16384), UInt32(16384), i < 4 ? next : 0, UInt16(i + 1)) }
        g.offer(chain)
        assertPullBreaks(g, .frameTooLong(5 * 16384))

        let small = try Guest()
        small.queue.maxFrameLength = 1000
        small.ring.offerTX(frame: ethernetFrame(length: 989))   // 12 + 989 = 1001 bytes
        assertPullBreaks(small, .frameTooLong(1001))

        // At the limit exactly is fine.
        let exact = try Guest()
        exact.queue.maxFrameLength = 1000
        exact.ring.offerTX(frame: ethernetFrame(length: 988))
        XCTAssertEqual(exact.queue.pull(into: exact.batch, counters: exact.counters), 1)
        XCTAssertTrue(exact.queue.isRunning)
    }

    func testRuntFrameIsDroppedWithoutBreakingTheQueue() throws {
        let g = try Guest()
        g.ring.offerTX(frame: Array(ethernetFrame(length: 14)[..<13]))   // one byte short of an Ethernet header
        g.ring.offerTX(frame: [], header: [1, 2, 3, 4, 5, 6, 7, 8])       // shorter than the virtio-net header
        let good = ethernetFrame(length: 14)
        g.ring.offerTX(frame: good)
        XCTAssertEqual(g.queue.pull(into: g.batch, counters: g.counters), 3)
        XCTAssertTrue(g.queue.isRunning)
        XCTAssertNil(g.queue.error)
        XCTAssertEqual(g.batch.count, 1)
        XCTAssertEqual(g.batch.frameBytes(0), good)
        XCTAssertEqual(g.counters.snapshot, CounterSnapshot(rxPackets: 1, rxBytes: 14, drops: [.runt: 2]))
        g.queue.release()
        XCTAssertEqual(g.ring.usedEntries().count, 3, "runts go back to the driver too")
    }
}

// MARK: - Fuzz

/// Random rings written into real guest memory, replayed with a fixed seed:
/// pull and push must never crash, never hand out or write memory outside the
/// guest's regions, and either forward or stop with an error.
extension HostileGuestTests {
    private struct FuzzGuest {
        static let mib: UInt64 = 1 << 20
        // Two regions adjacent in guest-physical space, cut from the memfd with
        // a hole after each: the back-end's mapping of the second region spans
        // the first hole, and neither hole belongs to the guest. Both are
        // filled with a canary that must survive every push.
        static let regions = [
            GuestMemoryRegionInfo(guestPhysicalAddress: 0x1000_0000, size: mib, frontEndAddress: 0x7f00_0000_0000, mmapOffset: 0),
            GuestMemoryRegionInfo(guestPhysicalAddress: 0x1010_0000, size: mib, frontEndAddress: 0x7e00_0000_0000, mmapOffset: 2 * mib),
        ]
        static let holes = [Int(mib)..<Int(2 * mib), Int(3 * mib)..<Int(4 * mib)]
        static let canary: UInt8 = 0xCC
        static let txRing: UInt64 = 0x1000_0000
        static let rxRing: UInt64 = 0x1000_4000
        static let area: Range<UInt64> = 0x1000_8000 ..< 0x1020_0000
    }

    private struct Fuzzer {
        var rng: SeededGenerator

        mutating func int(_ r: ClosedRange<Int>) -> Int { Int.random(in: r, using: &rng) }
        mutating func chance(_ percent: Int) -> Bool { int(0...99) < percent }

        mutating func address() -> UInt64 {
            switch int(0...9) {
            case 0...5: return UInt64.random(in: FuzzGuest.area, using: &rng)
            case 6: return FuzzGuest.regions[int(0...1)].guestPhysicalAddress + FuzzGuest.mib - UInt64(int(0...64))
            case 7: return UInt64.random(in: 0...UInt64.max, using: &rng)
            case 8: return UInt64.max - UInt64(int(0...4096))
            default: return UInt64(int(0...0xFFFF))
            }
        }

        mutating func length() -> UInt32 {
            switch int(0...9) {
            case 0...5: return UInt32(int(1...2048))
            case 6: return 0
            case 7: return UInt32(int(1...70_000))
            case 8: return UInt32.random(in: 0...UInt32.max, using: &rng)
            default: return UInt32(16 * int(1...16))
            }
        }

        mutating func flags() -> UInt16 {
            var f = UInt16(int(0...7))
            if chance(40) { f &= ~DescriptorFlag.indirect }
            return f
        }

        mutating func next(size: UInt16) -> UInt16 {
            chance(85) ? UInt16(int(0...Int(size) - 1)) : UInt16.random(in: 0...UInt16.max, using: &rng)
        }

        /// Scribbles on the driver's side of `ring`: descriptors, an indirect
        /// table, avail entries and the avail index.
        mutating func scribble(_ ring: MockSplitRing, lastAvail: UInt16) {
            let size = ring.size
            for _ in 0..<int(0...8) {
                ring.writeDescriptor(UInt16(int(0...Int(size) - 1)), address: address(), length: length(),
                                     flags: flags(), next: next(size: size))
            }
            if chance(20) {
                let entries = int(1...8)
                let table = ring.allocateBuffer(16 * entries)
                for i in 0..<entries {
                    ring.writeDescriptor(atGPA: table + UInt64(16 * i), address: address(), length: length(),
                                         flags: flags(), next: chance(80) ? UInt16(int(0...entries)) : next(size: size))
                }
                ring.writeDescriptor(UInt16(int(0...Int(size) - 1)), address: table,
                                     length: chance(80) ? UInt32(16 * entries) : length(),
                                     flags: DescriptorFlag.indirect | (chance(10) ? DescriptorFlag.next : 0))
            }
            let n = int(0...Int(size))
            for slot in 0..<n {
                ring.setAvailEntry(slot: lastAvail &+ UInt16(slot),
                                   head: chance(95) ? UInt16(int(0...Int(size) - 1)) : next(size: size))
            }
            ring.availIndex = chance(95) ? lastAvail &+ UInt16(n) : UInt16.random(in: 0...UInt16.max, using: &rng)
        }
    }

    /// One queue and its driver side, rebuilt with a new shape whenever it breaks.
    private final class FuzzQueue {
        let ram: GuestRAM
        let memory: GuestMemory
        let at: UInt64
        let queue = SplitVirtqueue(index: 0)
        var ring: MockSplitRing
        var errors: [String: Int] = [:]

        init(ram: GuestRAM, memory: GuestMemory, at: UInt64, fuzz: inout Fuzzer, callFD: Int32) throws {
            self.ram = ram
            self.memory = memory
            self.at = at
            ring = MockSplitRing(ram: ram, size: 1, at: at, buffers: FuzzGuest.area)
            queue.callFD = callFD
            try rebuild(&fuzz)
        }

        func rebuild(_ fuzz: inout Fuzzer) throws {
            queue.stop()
            let size = [1, 2, 4, 8, 16, 64, 256][fuzz.int(0...6)]
            ring = MockSplitRing(ram: ram, size: UInt16(size), at: at, buffers: FuzzGuest.area)
            ring.configure(queue, eventIndex: fuzz.chance(50), headerLength: fuzz.chance(80) ? 12 : 10,
                           mergeableBuffers: fuzz.chance(50))
            queue.baseIndex = RingIndex(UInt16.random(in: 0...UInt16.max, using: &fuzz.rng))
            try queue.start(memory: memory)
        }

        /// Checks the queue is either running cleanly or stopped with an error; rebuilds it if stopped.
        func settle(_ fuzz: inout Fuzzer, file: StaticString = #filePath, line: UInt = #line) throws {
            if queue.isRunning {
                XCTAssertNil(queue.error, file: file, line: line)
                if fuzz.chance(1) {
                    // GET_VRING_BASE then SET_VRING_BASE with its answer, as around a migration.
                    queue.baseIndex = queue.stop()
                    try queue.start(memory: memory)
                }
                return
            }
            guard let e = queue.error else { return XCTFail("stopped without an error", file: file, line: line) }
            errors[Mirror(reflecting: e).children.first?.label ?? String(describing: e), default: 0] += 1
            try rebuild(&fuzz)
        }
    }

    func testSeededFuzzNeverEscapesGuestMemory() throws {
        var fuzz = Fuzzer(rng: SeededGenerator(seed: 0x00F3_22A1_5EED))
        let ram = try GuestRAM(size: 4 << 20, regions: FuzzGuest.regions)
        for hole in FuzzGuest.holes {
            (ram.shared.base + hole.lowerBound).initializeMemory(as: UInt8.self, repeating: FuzzGuest.canary, count: hole.count)
        }
        let memory = try ram.makeGuestMemory()
        let hostRanges = try FuzzGuest.regions.map { r -> Range<UInt> in
            let p = try XCTUnwrap(memory.translate(GuestAddress(r.guestPhysicalAddress), length: UInt32(r.size)))
            return UInt(bitPattern: p) ..< UInt(bitPattern: p) + UInt(r.size)
        }
        let call = try EventFD.create()
        let tx = try FuzzQueue(ram: ram, memory: memory, at: FuzzGuest.txRing, fuzz: &fuzz, callFD: call.rawValue)
        let rx = try FuzzQueue(ram: ram, memory: memory, at: FuzzGuest.rxRing, fuzz: &fuzz, callFD: call.rawValue)
        let batch = PacketBatch(capacity: 16, segmentsPerFrame: 4)
        let outgoing = PacketBatch(capacity: 4)
        let store = FrameStore(capacity: 64 << 10)
        let template = ethernetFrame(length: 9000)
        var pulled = 0, delivered = 0

        for iteration in 0..<20_000 {
            // TX: well-formed frames now and then, so the queue also makes progress.
            if fuzz.chance(40) {
                for _ in 0..<fuzz.int(1...3) where tx.ring.availIndex &- tx.queue.lastAvail.rawValue < tx.ring.size {
                    let length = fuzz.int(1...3000)
                    tx.ring.offerTX(frame: Array(template[..<length]),
                                    header: [UInt8](repeating: 0, count: tx.queue.configuration.headerLength),
                                    split: nil, indirect: fuzz.chance(30))
                }
            } else {
                fuzz.scribble(tx.ring, lastAvail: tx.queue.lastAvail.rawValue)
            }
            batch.reset()
            let counters = QueueCounters()
            let consumed = tx.queue.pull(into: batch, counters: counters)
            XCTAssertLessThanOrEqual(batch.count, consumed)
            for i in 0..<batch.count {
                let segments = batch.segmentRanges(i)
                XCTAssertEqual(segments.reduce(0) { $0 + $1.length }, batch.length(of: i), "iteration \(iteration)")
                XCTAssertGreaterThanOrEqual(batch.length(of: i), 14)
                for s in segments {
                    let start = UInt(bitPattern: s.base)
                    XCTAssertTrue(hostRanges.contains { start >= $0.lowerBound && start + UInt(s.length) <= $0.upperBound },
                                  "iteration \(iteration): segment outside guest memory")
                }
            }
            pulled += batch.count
            tx.queue.release()
            try tx.settle(&fuzz)

            // RX: the same mix of posted buffers and scribbles, then a few frames.
            if fuzz.chance(40) {
                for _ in 0..<fuzz.int(1...4) where rx.ring.availIndex &- rx.queue.lastAvail.rawValue < rx.ring.size {
                    rx.ring.offerRX(bufferSizes: (0..<fuzz.int(1...3)).map { _ in fuzz.int(1...2048) }, indirect: fuzz.chance(30))
                }
            } else {
                fuzz.scribble(rx.ring, lastAvail: rx.queue.lastAvail.rawValue)
            }
            outgoing.reset()
            store.reset()
            let frames = fuzz.int(1...4)
            for _ in 0..<frames {
                let length = fuzz.int(14...9000)
                let cut = fuzz.int(0...length)
                store.append(Array(template[..<length]), to: outgoing, segments: cut == 0 || cut == length ? nil : [cut, length - cut])
            }
            let rxCounters = QueueCounters()
            rx.queue.push(from: outgoing, counters: rxCounters)
            let outcome = rxCounters.snapshot
            XCTAssertEqual(Int(outcome.txPackets + outcome.totalDrops), frames, "every frame delivered or counted")
            delivered += Int(outcome.txPackets)
            _ = rx.ring.usedEntries()
            try rx.settle(&fuzz)

            if iteration % 1000 == 999 {
                _ = EventFD.drain(call.rawValue)
                assertCanaryIntact(ram, iteration: iteration)
            }
        }
        assertCanaryIntact(ram, iteration: 20_000)

        // The run exercised both sides and many ways of breaking.
        XCTAssertGreaterThan(pulled, 2000)
        XCTAssertGreaterThan(delivered, 2000)
        let kinds = Set(tx.errors.keys).union(rx.errors.keys)
        XCTAssertGreaterThanOrEqual(kinds.count, 10, "error kinds seen: \(kinds.sorted())")
    }

    private func assertCanaryIntact(_ ram: GuestRAM, iteration: Int) {
        for hole in FuzzGuest.holes {
            let bytes = UnsafeRawBufferPointer(start: ram.shared.base + hole.lowerBound, count: hole.count)
            XCTAssertTrue(bytes.allSatisfy { $0 == FuzzGuest.canary }, "memory outside the regions was written by iteration \(iteration)")
        }
    }
}
