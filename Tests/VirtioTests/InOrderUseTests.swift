import Packets
import TestSupport
import Virtio
import XCTest

/// VIRTIO_F_IN_ORDER is offered because both ring layouts already use chains in
/// the order the driver made them available: a driver in its in-order mode finds
/// a chain's buffers by the used entry's position, so an entry out of place would
/// hand it another chain's buffers. Drops, chains left for the next burst and
/// frames that find too little room must not break the order.
final class InOrderUseTests: XCTestCase {
    func testOfferedToEveryDriver() {
        XCTAssertTrue(VirtioNetFeatures.offered.contains(.inOrder))
        XCTAssertEqual(VirtioNetFeatures.inOrder.rawValue, 1 << 35, "VIRTIO_F_IN_ORDER (virtio 1.2 §6)")
    }

    func testSplitTransmitChainsAreUsedInTheirOrderAcrossDropsAndBursts() throws {
        let ram = try GuestRAM.oneRegion()
        let ring = MockSplitRing(ram: ram, size: 64)
        let queue = SplitVirtqueue(index: 0)
        ring.configure(queue)
        try queue.start(memory: ram.makeGuestMemory())
        assertTransmitChainsUsedInOrder(ring, pull: queue.pull(into:counters:), release: queue.release)
    }

    func testSplitReceiveChainsAreUsedInTheirOrderAcrossShortfalls() throws {
        let ram = try GuestRAM.oneRegion()
        let ring = MockSplitRing(ram: ram, size: 64)
        let queue = SplitVirtqueue(index: 0)
        ring.configure(queue, mergeableBuffers: true)
        try queue.start(memory: ram.makeGuestMemory())
        let heads = (0..<6).map { _ in ring.offerRX(bufferSizes: [1536]) }
        let store = FrameStore()
        let batch = PacketBatch(capacity: 8)
        // One chain; two; six, where three are left (takes none, they stay first in line); one; one.
        for length in [60, 3000, 9000, 100, 200] { store.append(ethernetFrame(length: length), to: batch) }
        let counters = QueueCounters()
        queue.push(from: batch, counters: counters)
        XCTAssertEqual(counters.snapshot.drops, [.noRxBuffer: 1])
        let entries = ring.usedEntries()
        XCTAssertEqual(entries.map(\.id), heads.prefix(5).map(UInt32.init))
        XCTAssertEqual(queue.lastAvail, 5)
    }

    func testPackedTransmitChainsAreUsedInTheirOrderAcrossDropsAndBursts() throws {
        let ram = try GuestRAM.oneRegion()
        let ring = MockPackedRing(ram: ram, size: 64)
        let queue = PackedVirtqueue(index: 0)
        ring.configure(queue)
        try queue.start(memory: ram.makeGuestMemory())
        assertTransmitChainsUsedInOrder(ring, pull: queue.pull(into:counters:), release: queue.release)
    }

    /// With IN_ORDER negotiated, a packed TX burst is marked used by one
    /// descriptor, where the burst's first would go, with its last chain's id:
    /// the other slots of the burst keep the driver's flags. Chains of two
    /// descriptors, drops and bursts that wrap round the ring change nothing.
    func testPackedTransmitBurstIsUsedWithOneDescriptorInOrder() throws {
        let ram = try GuestRAM.oneRegion()
        let ring = MockPackedRing(ram: ram, size: 16)
        ring.readsBatchesInOrder = true
        let queue = PackedVirtqueue(index: 0)
        ring.configure(queue, inOrder: true)
        try queue.start(memory: ram.makeGuestMemory())
        let counters = QueueCounters()
        let batch = PacketBatch(capacity: 5)
        var offered: [UInt32] = []
        var used: [UsedEntry] = []
        for round in 0..<6 {
            for i in 0..<5 {
                let frame = i == 3 ? [UInt8](repeating: 0, count: 8) : ethernetFrame(length: 60 + i, seed: UInt8(round))
                // Every other round, the second chain's frame comes in two descriptors.
                let split = round % 2 == 1 && i == 1 ? [6, 12 + frame.count - 6] : nil
                offered.append(UInt32(ring.offerTX(frame: frame, split: split)))
            }
            let first = ring.usedPosition
            batch.reset()
            XCTAssertEqual(queue.pull(into: batch, counters: counters), 5)
            queue.release()
            let slots = round % 2 == 1 ? 6 : 5
            for k in 1..<slots {
                // Still the driver's: AVAIL and USED differ (a used descriptor has them equal).
                let flags = ring.flags((first + UInt16(k)) % ring.size)
                XCTAssertNotEqual(flags & PackedFlag.avail != 0, flags & PackedFlag.used != 0,
                                  "round \(round): slot \(k) of the burst written used")
            }
            used += ring.usedEntries()
        }
        XCTAssertEqual(used.map(\.id), offered)
        XCTAssertEqual(used.map(\.length), [UInt32](repeating: 0, count: offered.count))
        XCTAssertEqual(counters.snapshot.drops, [.runt: 6])
        XCTAssertEqual(ring.outstanding, 0)
    }

    /// Offers 20 chains, every fifth a runt (consumed and dropped where it stands), pulls them
    /// in bursts of 7 and checks the used entries name the chains in the order they were offered.
    private func assertTransmitChainsUsedInOrder(_ ring: some MockDriverRing,
                                                 pull: (PacketBatch, QueueCounters) -> Int, release: () -> Void,
                                                 file: StaticString = #filePath, line: UInt = #line) {
        var offered: [UInt32] = []
        for i in 0..<20 {
            let frame = i % 5 == 2 ? [UInt8](repeating: 0, count: 8) : ethernetFrame(length: 60 + i, seed: UInt8(i))
            offered.append(UInt32(ring.offerTX(frame: frame)))
        }
        let counters = QueueCounters()
        let batch = PacketBatch(capacity: 7)
        var used: [UInt32] = []
        while true {
            batch.reset()
            let consumed = pull(batch, counters)
            release()
            used += ring.usedEntries().map(\.id)
            if consumed == 0 { break }
        }
        XCTAssertEqual(used, offered, file: file, line: line)
        XCTAssertEqual(counters.snapshot.drops, [.runt: 4], file: file, line: line)
    }
}
