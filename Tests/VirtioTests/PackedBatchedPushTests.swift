import Glibc
import Packets
import TestSupport
import XCTest

@testable import Virtio

/// The packed push's fast path (PackedVirtqueue+BatchedPush.swift): four
/// frames into the four single-buffer descriptors of one line, taken only when
/// every rule allows it; each rule that refuses leaves the ring untouched, and
/// the per-chain path then serves, drops or breaks exactly as it would alone.
final class PackedBatchedPushTests: XCTestCase {
    /// Every header field set, num_buffers the device's to overwrite.
    let header: [UInt8] = [0x01, 0x01, 54, 0, 0xA8, 0x05, 34, 0, 16, 0, 0xEF, 0xBE]

    private final class Guest {
        let ram: GuestRAM
        let ring: MockPackedRing
        let queue = PackedVirtqueue(index: 0)
        let memory: GuestMemory
        let store = FrameStore()
        let counters = QueueCounters()

        init(size: UInt16 = 256, headerLength: Int = 12, mergeable: Bool = false) throws {
            ram = try GuestRAM.oneRegion()
            ring = MockPackedRing(ram: ram, size: size)
            ring.configure(queue, headerLength: headerLength, mergeableBuffers: mergeable, guestChecksum: false)
            memory = try ram.makeGuestMemory()
            try queue.start(memory: memory)
        }

        func frames(_ lengths: [Int], header: [UInt8] = [UInt8](repeating: 0, count: 12)) -> PacketBatch {
            let batch = PacketBatch(capacity: 32)
            for (i, n) in lengths.enumerated() { store.append(ethernetFrame(length: n, seed: UInt8(i)), header: header, to: batch) }
            return batch
        }

        /// The fast path at the read position, for frames 0 ..< 4 of `batch`.
        func batched(_ batch: PacketBatch, segmenting: Bool = false, acceptance: OffloadAcceptance = .everything) -> Bool {
            queue.pushBatch(0, of: batch, memory: memory, segmenting: segmenting, acceptance: acceptance,
                            writes: UnloggedWrites())
        }

        /// Offers four single buffers of 2048 bytes but the third, which `third` offers instead.
        func offerLine(third: (Guest) -> Void) {
            ring.offerRX(bufferSizes: [2048])
            ring.offerRX(bufferSizes: [2048])
            third(self)
            ring.offerRX(bufferSizes: [2048])
        }

        /// A third descriptor written raw: `flags` beside AVAIL/USED, which follow the driver's lap.
        func offerRaw(address: UInt64? = nil, length: UInt32 = 2048, flags: UInt16 = DescriptorFlag.write) {
            ring.offerRaw([(address ?? ring.allocateBuffer(Int(length)), length, 99, flags)])
        }
    }

    func testFourSingleBuffersOnALineAreOneBatch() throws {
        let g = try Guest()
        for _ in 0..<8 { g.ring.offerRX(bufferSizes: [2048]) }
        let lengths = [60, 1514, 2036, 100]
        let batch = g.frames(lengths, header: header)
        XCTAssertTrue(g.batched(batch))
        XCTAssertEqual(g.ring.usedEntries(), [], "nothing is used before the burst publishes")
        g.queue.publishUsed()
        let got = g.ring.receive()
        XCTAssertEqual(got.map(\.frame), lengths.enumerated().map { ethernetFrame(length: $1, seed: UInt8($0)) })
        XCTAssertEqual(got.map(\.numBuffers), [1, 1, 1, 1])
        XCTAssertEqual(got.map { $0.entries[0].length }, lengths.map { UInt32(12 + $0) })
        XCTAssertEqual(got.map { $0.entries[0].id }, [0, 1, 2, 3])
        XCTAssertEqual(got[0].header[0], 0, "the flags keep only what the driver accepts (nothing here)")
        XCTAssertEqual(Array(got[0].header[1..<10]), Array(header[1..<10]), "the rest of the header travels")
        XCTAssertEqual(g.ring.outstanding, 4)
    }

    /// Each rule that sends a line to the per-chain path, with what that path then does.
    func testEveryFallbackRuleTakesNothingAndThePerChainPathDecides() throws {
        let cases: [(name: String, mergeable: Bool, lengths: [Int], offer: (Guest) -> Void,
                     delivered: Int, drops: [DropReason: UInt64], error: VirtqueueError?)] = [
            ("a chain of two", false, [64, 64, 1500, 64], { $0.ring.offerRX(bufferSizes: [12, 2036]) }, 4, [:], nil),
            ("an indirect table", false, [64, 64, 64, 64], { $0.ring.offerRX(bufferSizes: [2048], indirect: true) },
             4, [:], nil),
            ("a frame that does not fit", false, [64, 64, 1514, 64], { $0.ring.offerRX(bufferSizes: [1000]) },
             3, [.rxBufferTooSmall: 1], nil),
            ("a frame over mergeable buffers", true, [64, 64, 1514, 64], { $0.ring.offerRX(bufferSizes: [1000]) },
             4, [:], nil),
            ("a buffer outside memory", false, [64, 64, 64, 64], { $0.offerRaw(address: 0x1000) },
             0, [.deviceBroken: 2], .descriptorAddressInvalid(address: 0x1000, length: 2048)),
            ("a buffer whose end wraps", false, [64, 64, 64, 64], { $0.offerRaw(address: .max - 100) },
             0, [.deviceBroken: 2], .descriptorAddressInvalid(address: .max - 100, length: 2048)),
            ("a readable buffer", false, [64, 64, 64, 64], { $0.offerRaw(flags: 0) },
             0, [.deviceBroken: 2], .readableInDeviceChain),
        ]
        for c in cases {
            let g = try Guest(mergeable: c.mergeable)
            g.offerLine(third: c.offer)
            g.ring.offerRX(bufferSizes: [2048])
            let batch = g.frames(c.lengths)
            XCTAssertFalse(g.batched(batch), c.name)
            XCTAssertEqual(g.queue.postedBuffers, 5, "\(c.name): nothing taken")
            g.queue.push(from: batch, counters: g.counters)
            XCTAssertEqual(g.ring.receive().count, c.delivered, c.name)
            XCTAssertEqual(g.counters.snapshot.drops, c.drops, c.name)
            XCTAssertEqual(g.queue.error, c.error, c.name)
        }
    }

    func testALineNotAllAvailableIsServedOneChainAtATime() throws {
        // Three offered: the fourth slot is empty.
        let g = try Guest()
        for _ in 0..<3 { g.ring.offerRX(bufferSizes: [2048]) }
        let batch = g.frames([64, 64, 64, 64])
        XCTAssertFalse(g.batched(batch))
        g.queue.push(from: batch, counters: g.counters)
        XCTAssertEqual(g.ring.receive().count, 3)
        XCTAssertEqual(g.counters.snapshot.drops, [.noRxBuffer: 1])

        // The third marked for the next lap (a wrap counter that lies): the chains before it only.
        let lie = try Guest()
        lie.offerLine { $0.ring.offerRX(bufferSizes: [2048]) }
        lie.ring.writeDescriptor(2, address: lie.ring.allocateBuffer(2048), length: 2048, id: 2,
                                 flags: DescriptorFlag.write | PackedFlag.available(wrap: false))
        XCTAssertFalse(lie.batched(batch))
        lie.queue.push(from: batch, counters: lie.counters)
        XCTAssertEqual(lie.ring.receive().count, 2)
        XCTAssertEqual(lie.counters.snapshot.drops, [.noRxBuffer: 2])
        XCTAssertTrue(lie.queue.isRunning)
    }

    func testFramesBuffersAndPositionsTheFastPathLeavesAlone() throws {
        // A frame in two pieces.
        let g = try Guest()
        for _ in 0..<12 { g.ring.offerRX(bufferSizes: [2048]) }
        let pieces = PacketBatch(capacity: 8)
        for i in 0..<4 { g.store.append(ethernetFrame(length: 200), to: pieces, segments: i == 1 ? [100, 100] : [200]) }
        XCTAssertFalse(g.batched(pieces))
        // A frame the driver cannot take whole (a TSO super-frame it did not negotiate).
        let gso = GSOTestFrame(payloadLength: 1000, segmentSize: 500)
        var gsoHeader = [UInt8](repeating: 0, count: 12)
        gsoHeader.withUnsafeMutableBytes { gso.header.store(to: $0.baseAddress!) }
        let superFrames = g.frames([64, 64, 64])
        g.store.append(gso.bytes, header: gsoHeader, to: superFrames)
        XCTAssertFalse(g.batched(superFrames, segmenting: true, acceptance: .partialChecksum))
        XCTAssertTrue(g.batched(superFrames, segmenting: true, acceptance: .everything))
        // Not on a line's first descriptor: one frame, then the line after it.
        let one = g.frames([64])
        g.queue.push(from: one, counters: g.counters)
        XCTAssertFalse(g.batched(g.frames([64, 64, 64, 64])))

        // A ring of 6: the second line would wrap (positions 4, 5, 0, 1), though all four are available.
        let small = try Guest(size: 6)
        for _ in 0..<6 { small.ring.offerRX(bufferSizes: [2048]) }
        XCTAssertTrue(small.batched(small.frames([64, 64, 64, 64])))
        small.queue.publishUsed()
        XCTAssertEqual(small.ring.receive().count, 4)
        for _ in 0..<4 { small.ring.offerRX(bufferSizes: [2048]) }
        let across = small.frames([64, 64, 64, 64])
        XCTAssertFalse(small.batched(across))
        small.queue.push(from: across, counters: small.counters)
        XCTAssertEqual(small.ring.receive().map(\.frame), (0..<4).map { across.frameBytes($0) })

        // A legacy 10-byte header (no VERSION_1) goes the per-chain way.
        let legacy = try Guest(headerLength: 10)
        for _ in 0..<4 { legacy.ring.offerRX(bufferSizes: [2048]) }
        XCTAssertFalse(legacy.batched(legacy.frames([64, 64, 64, 64])))
    }

    /// A ring of 10 (no multiple of 4) wrapped hundreds of times with bursts
    /// of 1 to 9 frames: lines, partial lines and chains at every position.
    func testBatchesAndSingleChainsWrapAroundTogether() throws {
        let g = try Guest(size: 10, mergeable: true)
        var expected: [[UInt8]] = []
        var received: [[UInt8]] = []
        for round in 0..<400 {
            while g.ring.outstanding < 9 {
                g.ring.offerRX(bufferSizes: round % 7 == 3 ? [600, 1448] : [2048], indirect: round % 11 == 5)
            }
            let batch = PacketBatch(capacity: 16)
            g.store.reset()
            let count = 1 + round % 9
            for i in 0..<count {
                let f = ethernetFrame(length: 60 + (round * 31 + i * 97) % 1900, seed: UInt8(truncatingIfNeeded: round + i))
                g.store.append(f, to: batch)
            }
            let before = g.counters.snapshot.txPackets
            g.queue.push(from: batch, counters: g.counters)
            let sent = Int(g.counters.snapshot.txPackets - before)
            for i in 0..<sent { expected.append(batch.frameBytes(i)) }
            received += g.ring.receive().map(\.frame)
        }
        XCTAssertNil(g.queue.error)
        XCTAssertEqual(received, expected)
        XCTAssertGreaterThan(received.count, 1500)
    }
}
