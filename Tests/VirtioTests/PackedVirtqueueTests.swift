import Glibc
import Packets
import Platform
import TestSupport
import Virtio
import XCTest

/// Well-behaved traffic through a packed virtqueue, driven by the mock packed driver.
final class PackedVirtqueueTests: XCTestCase {
    /// Every header field set (see SplitVirtqueueTests), num_buffers the device's to overwrite.
    let offloadHeader: [UInt8] = [0x01, 0x01, 54, 0, 0xA8, 0x05, 34, 0, 16, 0, 0xEF, 0xBE]

    // MARK: TX: pull

    func testPullOneFrameAndMarkItUsedOnlyOnRelease() throws {
        let (ring, queue) = try PackedVirtqueue.started()
        let frame = ethernetFrame(length: 60)
        let id = ring.offerTX(frame: frame, header: offloadHeader)
        let batch = PacketBatch(capacity: 32)
        let counters = QueueCounters()

        XCTAssertEqual(queue.pull(into: batch, counters: counters), 1)
        XCTAssertEqual(batch.frameBytes(0), frame)
        XCTAssertEqual(batch.headerBytes(0), offloadHeader, "the header travels unchanged")
        XCTAssertEqual(batch.segmentCount(of: 0), 1, "zero copy: one segment pointing into guest memory")
        XCTAssertEqual(counters.snapshot, CounterSnapshot(rxPackets: 1, rxBytes: 60))
        XCTAssertEqual(ring.usedEntries(), [], "the guest must not reuse buffers still in flight")
        queue.release()
        XCTAssertEqual(ring.usedEntries(), [UsedEntry(id: UInt32(id), length: 0)])
        queue.release()
        XCTAssertEqual(ring.usedEntries(), [], "a second release marks nothing")
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 0)
    }

    /// Single buffers go in runs (PackedVirtqueue+SingleBuffers.swift); a chain of two
    /// descriptors or an indirect one ends a run and is walked on its own. Order, bytes and
    /// headers are the same either way, round the ring's end and over several bursts.
    func testPullMixesSingleBuffersAndChainsInOrderRoundTheRing() throws {
        let (ring, queue) = try PackedVirtqueue.started(size: 64)
        let batch = PacketBatch(capacity: 256)
        let counters = QueueCounters()
        var all: [[UInt8]] = []
        for burst in 0..<5 {
            var frames: [[UInt8]] = []
            var ids: [UInt16] = []
            for i in 0..<50 {
                let frame = ethernetFrame(length: 60 + i, seed: UInt8(truncatingIfNeeded: burst * 50 + i))
                let header = i % 5 == 0 ? offloadHeader : [UInt8](repeating: 0, count: 12)
                frames.append(frame)
                switch i {
                case 3, 40: ids.append(ring.offerTX(frame: frame, header: header, split: [12, frame.count]))
                case 41: ids.append(ring.offerTX(frame: frame, header: header, indirect: true))
                default: ids.append(ring.offerTX(frame: frame, header: header))
                }
            }
            batch.reset()
            XCTAssertEqual(queue.pull(into: batch, counters: counters), 50)
            for (i, f) in frames.enumerated() {
                XCTAssertEqual(batch.frameBytes(i), f, "burst \(burst) frame \(i)")
                XCTAssertEqual(batch.headerBytes(i), i % 5 == 0 ? offloadHeader : [UInt8](repeating: 0, count: 12))
            }
            XCTAssertEqual(ring.usedEntries(), [], "nothing used before release")
            queue.release()
            XCTAssertEqual(ring.usedEntries(), ids.map { UsedEntry(id: UInt32($0), length: 0) })
            all += frames
        }
        XCTAssertEqual(counters.snapshot, CounterSnapshot(rxPackets: 250, rxBytes: UInt64(all.map(\.count).reduce(0, +))))
    }

    /// A run of single buffers takes no more frames than the batch has segments left, nor
    /// more than it has room for; the rest wait for the next burst.
    func testSingleBuffersStopWhereTheBatchRunsOut() throws {
        let (ring, queue) = try PackedVirtqueue.started()
        let batch = PacketBatch(capacity: 8, segmentsPerFrame: 1)
        let counters = QueueCounters()
        let three = ethernetFrame(length: 60, seed: 9)
        ring.offerTX(frame: three, split: [12, 20, 20, 20])
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 1)
        XCTAssertEqual(batch.segmentCount, 3)
        let singles = (0..<12).map { ethernetFrame(length: 64, seed: UInt8($0)) }
        for f in singles { ring.offerTX(frame: f) }

        XCTAssertEqual(queue.pull(into: batch, counters: counters), 5, "as many as the segments left")
        XCTAssertEqual(batch.segmentCount, 8)
        for i in 0..<5 { XCTAssertEqual(batch.frameBytes(i + 1), singles[i], "frame \(i)") }
        queue.release()
        XCTAssertEqual(ring.usedEntries().count, 6)
        batch.reset()
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 7)
        for i in 0..<7 { XCTAssertEqual(batch.frameBytes(i), singles[i + 5], "frame \(i + 5)") }
        queue.release()
        XCTAssertEqual(ring.usedEntries().count, 7)
        XCTAssertEqual(counters.snapshot.drops, [:])
    }

    func testPullChainsAndIndirectTablesInOrder() throws {
        let (ring, queue) = try PackedVirtqueue.started()
        let frames = (0..<4).map { ethernetFrame(length: 200 + 300 * $0, seed: UInt8($0)) }
        let ids = [
            ring.offerTX(frame: frames[0], header: offloadHeader, split: [5, 17, 190]),
            ring.offerTX(frame: frames[1], indirect: true),
            ring.offerTX(frame: frames[2], split: [12, 14, 400, 386], indirect: true),
            ring.offerTX(frame: frames[3], split: [12, 1100]),
        ]
        let batch = PacketBatch(capacity: 32, segmentsPerFrame: 8)
        XCTAssertEqual(queue.pull(into: batch, counters: QueueCounters()), 4)
        for (i, f) in frames.enumerated() { XCTAssertEqual(batch.frameBytes(i), f, "frame \(i)") }
        XCTAssertEqual(batch.headerBytes(0), offloadHeader)
        XCTAssertEqual(batch.segmentRanges(0).map(\.length), [10, 190])
        queue.release()
        XCTAssertEqual(ring.usedEntries().map(\.id), ids.map(UInt32.init), "one used descriptor per chain, in order")
        XCTAssertEqual(ring.outstanding, 0)
    }

    func testPullStopsAtTheBatchCapacityAndResumes() throws {
        let (ring, queue) = try PackedVirtqueue.started()
        let frames = (0..<40).map { ethernetFrame(length: 100, seed: UInt8($0)) }
        for f in frames { ring.offerTX(frame: f) }
        let batch = PacketBatch(capacity: 32)
        let counters = QueueCounters()
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 32)
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 0, "a full batch takes nothing")
        queue.release()
        XCTAssertEqual(ring.usedEntries().count, 32)
        batch.reset()
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 8)
        XCTAssertEqual(batch.frameBytes(7), frames[39])
    }

    /// A ring of 7 (no power of two: §2.8 needs none) wrapped many times over, with chains of
    /// one to three descriptors and indirect tables crossing the end of the ring.
    func testPullWrapsAroundManyTimes() throws {
        let (ring, queue) = try PackedVirtqueue.started(size: 7)
        let batch = PacketBatch(capacity: 8, segmentsPerFrame: 4)
        let counters = QueueCounters()
        var expected: [[UInt8]] = []
        var received = 0
        for round in 0..<500 {
            while ring.outstanding < 5 {
                let frame = ethernetFrame(length: 60 + (round * 13 + expected.count) % 1400, seed: UInt8(truncatingIfNeeded: expected.count))
                let pieces = [[frame.count + 12], [12, frame.count], [6, 6 + 20, frame.count - 20]][expected.count % 3]
                ring.offerTX(frame: frame, split: pieces, indirect: expected.count % 5 == 4)
                expected.append(frame)
            }
            batch.reset()
            let n = queue.pull(into: batch, counters: counters)
            XCTAssertGreaterThan(n, 0)
            for i in 0..<batch.count { XCTAssertEqual(batch.frameBytes(i), expected[received + i], "frame \(received + i)") }
            received += batch.count
            queue.release()
            XCTAssertEqual(ring.usedEntries().count, n)
        }
        XCTAssertNil(queue.error)
        XCTAssertGreaterThan(received, 1000, "the ring went round hundreds of times")
        XCTAssertEqual(counters.snapshot.rxPackets, UInt64(received))
    }

    // MARK: RX: push

    func testPushOneFrameSetsNumBuffersAndPassesTheHeader() throws {
        let (ring, queue) = try PackedVirtqueue.started()
        ring.offerRX(bufferSizes: [2048])
        let batch = PacketBatch(capacity: 8)
        let store = FrameStore()
        let frame = ethernetFrame(length: 1514)
        store.append(frame, header: offloadHeader, to: batch)
        let counters = QueueCounters()
        queue.push(from: batch, counters: counters)
        let got = ring.receive()
        XCTAssertEqual(got.count, 1)
        XCTAssertEqual(got[0].frame, frame)
        XCTAssertEqual(got[0].numBuffers, 1)
        XCTAssertEqual(Array(got[0].header[..<10]), Array(offloadHeader[..<10]))
        XCTAssertEqual(got[0].entries[0].length, UInt32(12 + frame.count))
        XCTAssertEqual(counters.snapshot, CounterSnapshot(txPackets: 1, txBytes: 1514))
    }

    func testPushIntoChainsAndIndirectTables() throws {
        let (ring, queue) = try PackedVirtqueue.started()
        ring.offerRX(bufferSizes: [12, 100, 2000])
        ring.offerRX(bufferSizes: [500, 1600], indirect: true)
        let batch = PacketBatch(capacity: 8)
        let store = FrameStore()
        let frames = [ethernetFrame(length: 1514), ethernetFrame(length: 1200, seed: 3)]
        for f in frames { store.append(f, to: batch, segments: [100, f.count - 100]) }
        queue.push(from: batch, counters: QueueCounters())
        XCTAssertEqual(ring.receive().map(\.frame), frames)
        XCTAssertEqual(ring.outstanding, 0, "a chain's used descriptor covers all its descriptors")
    }

    func testPushAJumboFrameAcrossMergeableBuffersMarksTheFirstUsedLast() throws {
        let (ring, queue) = try PackedVirtqueue.started(mergeable: true)
        for _ in 0..<6 { ring.offerRX(bufferSizes: [2048]) }
        let batch = PacketBatch(capacity: 8)
        let store = FrameStore()
        let jumbo = ethernetFrame(length: 9000)
        store.append(jumbo, to: batch)
        queue.push(from: batch, counters: QueueCounters())
        let got = ring.receive()
        XCTAssertEqual(got.count, 1)
        XCTAssertEqual(got[0].numBuffers, 5)
        XCTAssertEqual(got[0].frame, jumbo)
        XCTAssertEqual(ring.outstanding, 1, "the sixth buffer is still the driver's")
    }

    func testShortfallsTakeNothing() throws {
        let (ring, queue) = try PackedVirtqueue.started(mergeable: false)
        let batch = PacketBatch(capacity: 8)
        let store = FrameStore()
        store.append(ethernetFrame(length: 1514), to: batch)
        let counters = QueueCounters()
        queue.push(from: batch, counters: counters)
        XCTAssertEqual(counters.snapshot.drops, [.noRxBuffer: 1])
        ring.offerRX(bufferSizes: [1000])
        ring.offerRX(bufferSizes: [1000])
        queue.push(from: batch, counters: counters)
        XCTAssertEqual(counters.snapshot.drops, [.noRxBuffer: 1, .rxBufferTooSmall: 1])
        XCTAssertEqual(ring.usedEntries(), [], "a frame that did not fit took no chain")

        let (mring, mqueue) = try PackedVirtqueue.started(mergeable: true)
        mring.offerRX(bufferSizes: [1000])
        let big = PacketBatch(capacity: 8)
        store.append(ethernetFrame(length: 3000), to: big)
        store.append(ethernetFrame(length: 600), to: big)
        let m = QueueCounters()
        mqueue.push(from: big, counters: m)
        XCTAssertEqual(m.snapshot.drops, [.noRxBuffer: 1], "the big frame found too few buffers")
        XCTAssertEqual(mring.receive().map(\.frame.count), [600], "the small one took the buffer the big one left")
    }

    /// RX with mergeable buffers on a ring of 5 that wraps a few hundred times, frames of 1 to 4 buffers.
    func testPushWrapsAroundManyTimesWithMergeableBuffers() throws {
        let (ring, queue) = try PackedVirtqueue.started(size: 5, mergeable: true)
        let store = FrameStore()
        let batch = PacketBatch(capacity: 4)
        var delivered = 0
        for round in 0..<400 {
            while ring.outstanding < 5 { ring.offerRX(bufferSizes: [1024], indirect: round % 3 == 0) }
            batch.reset()
            store.reset()
            let frame = ethernetFrame(length: 100 + (round * 397) % 4000, seed: UInt8(truncatingIfNeeded: round))
            store.append(frame, to: batch)
            queue.push(from: batch, counters: QueueCounters())
            let got = ring.receive()
            XCTAssertEqual(got.map(\.frame), [frame], "round \(round)")
            delivered += got.count
        }
        XCTAssertNil(queue.error)
        XCTAssertEqual(delivered, 400)
    }

    // MARK: Receiving straight into a chain

    func testALentChainIsCommittedWithThePrefixAndMarkedUsedOnce() throws {
        let (ring, queue) = try PackedVirtqueue.started()
        let first = ring.offerRX(bufferSizes: [20, 2000])
        let memory = try XCTUnwrap(queue.memoryTable)
        let pieces = UnsafeMutablePointer<iovec>.allocate(capacity: 8)
        defer { pieces.deallocate() }
        guard case .chain(let id, let count, let bytes) = queue.nextChain(into: pieces, capacity: 8, want: 1600,
                                                                          memory: memory) else {
            return XCTFail("a posted chain is lent")
        }
        XCTAssertEqual(id, first)
        XCTAssertEqual(count, 2)
        XCTAssertEqual(bytes, 2020)
        // Nothing taken yet: asking again lends the same chain.
        guard case .chain(let again, _, _) = queue.nextChain(into: pieces, capacity: 8, want: 1600, memory: memory) else {
            return XCTFail("still lent")
        }
        XCTAssertEqual(again, first)
        let prefix = UnsafeMutableRawPointer.allocate(byteCount: 26, alignment: 8)
        defer { prefix.deallocate() }
        prefix.copyMemory(from: offloadHeader + ethernetFrame(length: 14), byteCount: 26)
        queue.commitChain(head: id, pieces: pieces, count: count, length: 526, prefix: prefix, prefixLength: 26)
        XCTAssertEqual(ring.usedEntries(), [], "used only when published")
        queue.publishCommitted()
        let got = ring.receive()
        XCTAssertEqual(got.count, 1)
        XCTAssertEqual(got[0].numBuffers, 1)
        XCTAssertEqual(got[0].entries, [UsedEntry(id: UInt32(first), length: 526)])
        XCTAssertEqual(Array(got[0].frame[..<14]), ethernetFrame(length: 14))
        guard case .none = queue.nextChain(into: pieces, capacity: 8, want: 1600, memory: memory) else {
            return XCTFail("no chain left")
        }
    }

    // MARK: Notifications and the ring base

    func testCallsFollowTheDriversEventSuppression() throws {
        let (ring, queue) = try PackedVirtqueue.started(eventIndex: true)
        let call = try EventFD.create()
        queue.callFD = call.rawValue
        let batch = PacketBatch(capacity: 32)
        func burst(_ n: Int) -> UInt64 {
            for _ in 0..<n { ring.offerTX(frame: ethernetFrame(length: 64)) }
            batch.reset()
            _ = queue.pull(into: batch, counters: QueueCounters())
            queue.release()
            _ = ring.usedEntries()
            return EventFD.drain(call.rawValue)
        }
        ring.driverEventFlags = PackedFlag.eventsEnabled
        XCTAssertEqual(burst(2), 1, "enabled: every burst calls")
        ring.driverEventFlags = PackedFlag.eventsDisabled
        XCTAssertEqual(burst(2), 0, "disabled: no call")
        // Used position is now 4 (wrap 1). Ask for a call once position 9 is used.
        ring.driverEventFlags = PackedFlag.eventAtDescriptor
        ring.driverEventOffWrap = 9 | 0x8000
        XCTAssertEqual(burst(3), 0, "positions 4-6 do not reach 9")
        XCTAssertEqual(burst(3), 1, "positions 7-9 do")
        XCTAssertEqual(burst(3), 0, "and once only")
        // Across the end of a ring of 256: position 3 in the next lap (wrap 0).
        ring.driverEventOffWrap = 3
        var calls: UInt64 = 0
        for _ in 0..<85 { calls += burst(3) }
        XCTAssertEqual(calls, 1, "one call as the used position passes 3 in the next lap")
    }

    func testNotificationRequestsGoToTheDeviceEventArea() throws {
        let (ring, queue) = try PackedVirtqueue.started()
        XCTAssertEqual(ring.deviceEventFlags, PackedFlag.eventsDisabled, "we poll: no kicks while running")
        XCTAssertFalse(queue.enableNotifications())
        XCTAssertEqual(ring.deviceEventFlags, PackedFlag.eventsEnabled)
        ring.offerTX(frame: ethernetFrame(length: 64))
        XCTAssertTrue(queue.enableNotifications(), "a chain that slipped in cancels the sleep")
        queue.disableNotifications()
        XCTAssertEqual(ring.deviceEventFlags, PackedFlag.eventsDisabled)
        XCTAssertEqual(queue.postedBuffers, 1)
    }

    func testStopReturnsPositionAndWrapCounterAndAStartResumesThere() throws {
        let ram = try GuestRAM.oneRegion()
        let (ring, queue) = try PackedVirtqueue.started(ram, size: 8)
        let batch = PacketBatch(capacity: 32)
        for round in 0..<3 {
            for _ in 0..<3 { ring.offerTX(frame: ethernetFrame(length: 64, seed: UInt8(round))) }
            batch.reset()
            XCTAssertEqual(queue.pull(into: batch, counters: QueueCounters()), 3)
            queue.release()
            _ = ring.usedEntries()
        }
        // 9 descriptors on a ring of 8: position 1 in the second lap, wrap counter 0.
        let base = queue.stop()
        XCTAssertEqual(base, 0x0001_0001)
        let again = PackedVirtqueue(index: 0)
        ring.configure(again)
        again.baseIndex = base
        try again.start(memory: ram.makeGuestMemory())
        let frame = ethernetFrame(length: 300, seed: 9)
        ring.offerTX(frame: frame)
        batch.reset()
        XCTAssertEqual(again.pull(into: batch, counters: QueueCounters()), 1)
        XCTAssertEqual(batch.frameBytes(0), frame)
        again.release()
        XCTAssertEqual(ring.usedEntries().count, 1)
        XCTAssertEqual(again.stop(), 0x0002_0002)

        // A fresh ring starts at position 0 with both wrap counters 1 (§2.8).
        XCTAssertEqual(PackedVirtqueue(index: 1).baseIndex, 0x8000_8000)
    }
}
