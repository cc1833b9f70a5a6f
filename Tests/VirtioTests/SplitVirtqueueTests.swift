import Glibc
import Packets
import Platform
import TestSupport
import Virtio
import XCTest

/// Well-behaved traffic through a split virtqueue, driven by the mock driver.
final class SplitVirtqueueTests: XCTestCase {
    /// A header with every field set, to see it travel unchanged: flags
    /// NEEDS_CSUM, gso_type TCPV4, hdr_len 54, gso_size 1448, csum_start 34,
    /// csum_offset 16 (§5.1.6), num_buffers 0xBEEF (the device's to overwrite).
    let offloadHeader: [UInt8] = [0x01, 0x01, 54, 0, 0xA8, 0x05, 34, 0, 16, 0, 0xEF, 0xBE]

    // MARK: TX: pull

    func testPullOneFrameFromOneDescriptor() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        let frame = ethernetFrame(length: 60)
        let head = ring.offerTX(frame: frame, header: offloadHeader)
        let batch = PacketBatch(capacity: 32)
        let counters = QueueCounters()

        XCTAssertEqual(queue.pull(into: batch, counters: counters), 1)
        XCTAssertEqual(batch.count, 1)
        XCTAssertEqual(batch.length(of: 0), 60)
        XCTAssertEqual(batch.segmentCount(of: 0), 1, "zero copy: one segment pointing into guest memory")
        XCTAssertEqual(batch.frameBytes(0), frame)
        XCTAssertEqual(batch.headerBytes(0), offloadHeader, "the header travels unchanged")
        XCTAssertEqual(counters.snapshot, CounterSnapshot(rxPackets: 1, rxBytes: 60))

        XCTAssertEqual(ring.usedIndex, 0, "the guest must not reuse buffers still in flight")
        XCTAssertEqual(ring.usedEntries(), [])
        queue.release()
        XCTAssertEqual(ring.usedEntries(), [UsedEntry(id: UInt32(head), length: 0)])
        queue.release()
        XCTAssertEqual(ring.usedIndex, 1, "a second release publishes nothing")
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 0)
    }

    func testPullManyFramesInOrder() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        let frames = (0..<100).map { ethernetFrame(length: 60 + $0 * 13, seed: UInt8($0)) }
        let heads = frames.map { ring.offerTX(frame: $0) }
        let batch = PacketBatch(capacity: 256)
        let counters = QueueCounters()

        XCTAssertEqual(queue.pull(into: batch, counters: counters), 100)
        XCTAssertEqual(batch.count, 100)
        for (i, f) in frames.enumerated() { XCTAssertEqual(batch.frameBytes(i), f, "frame \(i)") }
        XCTAssertEqual(counters.snapshot.rxPackets, 100)
        XCTAssertEqual(counters.snapshot.rxBytes, UInt64(frames.map(\.count).reduce(0, +)))
        queue.release()
        XCTAssertEqual(ring.usedEntries().map(\.id), heads.map(UInt32.init))
    }

    /// Single buffers go in runs (SplitVirtqueue+SingleBuffers.swift); a chain of two buffers
    /// or an indirect one ends a run and is walked on its own. Order, bytes and headers are
    /// the same either way.
    func testPullMixesSingleBuffersAndChainsInOrder() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        var frames: [[UInt8]] = []
        var heads: [UInt16] = []
        for i in 0..<150 {
            let frame = ethernetFrame(length: 60 + i, seed: UInt8(truncatingIfNeeded: i))
            let header = i % 5 == 0 ? offloadHeader : [UInt8](repeating: 0, count: 12)
            frames.append(frame)
            switch i {
            case 3, 70: heads.append(ring.offerTX(frame: frame, header: header, split: [12, frame.count]))
            case 71: heads.append(ring.offerTX(frame: frame, header: header, indirect: true))
            default: heads.append(ring.offerTX(frame: frame, header: header))
            }
        }
        let batch = PacketBatch(capacity: 256)
        let counters = QueueCounters()

        XCTAssertEqual(queue.pull(into: batch, counters: counters), 150)
        XCTAssertEqual(batch.count, 150)
        for (i, f) in frames.enumerated() {
            XCTAssertEqual(batch.frameBytes(i), f, "frame \(i)")
            XCTAssertEqual(batch.headerBytes(i), i % 5 == 0 ? offloadHeader : [UInt8](repeating: 0, count: 12), "header \(i)")
        }
        XCTAssertEqual(counters.snapshot, CounterSnapshot(rxPackets: 150, rxBytes: UInt64(frames.map(\.count).reduce(0, +))))
        XCTAssertEqual(ring.usedIndex, 0)
        queue.release()
        XCTAssertEqual(ring.usedEntries(), heads.map { UsedEntry(id: UInt32($0), length: 0) })
    }

    /// A run of single buffers takes no more frames than the batch has segments left; the
    /// rest wait for the next burst.
    func testSingleBuffersStopWhereTheBatchRunsOutOfSegments() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        let batch = PacketBatch(capacity: 8, segmentsPerFrame: 1)
        let counters = QueueCounters()
        let three = ethernetFrame(length: 60, seed: 9)
        ring.offerTX(frame: three, split: [12, 20, 20, 20])
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 1)
        XCTAssertEqual(batch.segmentCount, 3)
        let singles = (0..<7).map { ethernetFrame(length: 64, seed: UInt8($0)) }
        for f in singles { ring.offerTX(frame: f) }

        XCTAssertEqual(queue.pull(into: batch, counters: counters), 5, "as many as the segments left")
        XCTAssertEqual(batch.segmentCount, 8)
        XCTAssertEqual(batch.frameBytes(0), three)
        for i in 0..<5 { XCTAssertEqual(batch.frameBytes(i + 1), singles[i], "frame \(i)") }
        queue.release()
        XCTAssertEqual(ring.usedIndex, 6)
        batch.reset()
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 2)
        XCTAssertEqual(batch.frameBytes(1), singles[6])
        queue.release()
        XCTAssertEqual(ring.usedIndex, 8)
        XCTAssertEqual(counters.snapshot.drops, [:])
    }

    func testPullStopsAtTheBatchCapacityAndResumes() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        let frames = (0..<40).map { ethernetFrame(length: 100, seed: UInt8($0)) }
        for f in frames { ring.offerTX(frame: f) }
        let batch = PacketBatch(capacity: 32)
        let counters = QueueCounters()

        XCTAssertEqual(queue.pull(into: batch, counters: counters), 32)
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 0, "a full batch takes nothing")
        queue.release()
        XCTAssertEqual(ring.usedIndex, 32)
        batch.reset()
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 8)
        XCTAssertEqual(batch.frameBytes(7), frames[39])
        queue.release()
        XCTAssertEqual(ring.usedIndex, 40)
    }

    func testPullTwiceThenReleasePublishesBoth() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        let batch = PacketBatch(capacity: 32)
        let counters = QueueCounters()
        let a = ring.offerTX(frame: ethernetFrame(length: 64))
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 1)
        let b = ring.offerTX(frame: ethernetFrame(length: 64))
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 1)
        XCTAssertEqual(ring.usedIndex, 0)
        queue.release()
        XCTAssertEqual(ring.usedEntries().map(\.id), [UInt32(a), UInt32(b)])
    }

    func testPullHeaderInItsOwnDescriptor() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        let frame = ethernetFrame(length: 1514)
        ring.offerTX(frame: frame, header: offloadHeader, split: [12, 1514])
        let batch = PacketBatch(capacity: 32)
        XCTAssertEqual(queue.pull(into: batch, counters: QueueCounters()), 1)
        XCTAssertEqual(batch.segmentCount(of: 0), 1)
        XCTAssertEqual(batch.length(of: 0), 1514)
        XCTAssertEqual(batch.frameBytes(0), frame)
        XCTAssertEqual(batch.headerBytes(0), offloadHeader)
    }

    func testPullFrameSplitOverSeveralDescriptors() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        let frame = ethernetFrame(length: 1000)
        // The header itself cut in two, then the frame in uneven pieces.
        ring.offerTX(frame: frame, header: offloadHeader, split: [5, 17, 6, 100, 884])
        let batch = PacketBatch(capacity: 32, segmentsPerFrame: 8)
        XCTAssertEqual(queue.pull(into: batch, counters: QueueCounters()), 1)
        XCTAssertEqual(batch.segmentRanges(0).map(\.length), [10, 6, 100, 884])
        XCTAssertEqual(batch.frameBytes(0), frame)
        XCTAssertEqual(batch.headerBytes(0), offloadHeader)
        XCTAssertEqual(batch.length(of: 0), 1000)
    }

    func testPullThroughAnIndirectTable() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        let frames = [ethernetFrame(length: 60), ethernetFrame(length: 1514, seed: 7)]
        ring.offerTX(frame: frames[0], header: offloadHeader, indirect: true)
        let head = ring.offerTX(frame: frames[1], split: [12, 14, 1000, 500], indirect: true)
        let batch = PacketBatch(capacity: 32)
        XCTAssertEqual(queue.pull(into: batch, counters: QueueCounters()), 2)
        XCTAssertEqual(batch.frameBytes(0), frames[0])
        XCTAssertEqual(batch.headerBytes(0), offloadHeader)
        XCTAssertEqual(batch.frameBytes(1), frames[1])
        XCTAssertEqual(batch.segmentCount(of: 1), 3)
        queue.release()
        XCTAssertEqual(ring.usedEntries().last, UsedEntry(id: UInt32(head), length: 0))
    }

    func testPullABufferThatCrossesFromOneRegionIntoTheNext() throws {
        let ram = try GuestRAM.twoRegions()
        let boundary = ram.regions[1].guestPhysicalAddress
        let (ring, queue) = try SplitVirtqueue.started(ram, buffers: boundary - 700 ..< boundary + 0x10000)
        let frame = ethernetFrame(length: 1514)
        ring.offerTX(frame: frame)
        let batch = PacketBatch(capacity: 32)
        XCTAssertEqual(queue.pull(into: batch, counters: QueueCounters()), 1)
        XCTAssertEqual(batch.segmentCount(of: 0), 2, "one descriptor, two host pieces")
        XCTAssertEqual(batch.frameBytes(0), frame)
    }

    func testAChainWithMoreSegmentsThanABatchHolds() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        let batch = PacketBatch(capacity: 4, segmentsPerFrame: 1)
        let counters = QueueCounters()
        // Alone and still too big for an empty batch: dropped, or it would block the queue forever.
        ring.offerTX(frame: ethernetFrame(length: 100), split: [12, 20, 20, 20, 20, 20])
        let small = ethernetFrame(length: 64, seed: 1)
        ring.offerTX(frame: small)
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 2)
        XCTAssertEqual(counters.snapshot.drops, [.tooManySegments: 1])
        XCTAssertEqual(batch.count, 1)
        XCTAssertEqual(batch.frameBytes(0), small)
        queue.release()
        XCTAssertEqual(ring.usedIndex, 2)

        // Behind another frame it waits for the next burst, which starts empty.
        batch.reset()
        ring.offerTX(frame: small)
        let four = ethernetFrame(length: 92, seed: 2)
        ring.offerTX(frame: four, split: [12, 20, 20, 20, 32])
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 1)
        queue.release()
        batch.reset()
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 1)
        XCTAssertEqual(batch.frameBytes(0), four)
        XCTAssertEqual(counters.snapshot.drops, [.tooManySegments: 1])
    }

    func testAChainThatDoesNotFitBehindFramesOfAnEarlierPullWaits() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        let batch = PacketBatch(capacity: 4, segmentsPerFrame: 1)
        let counters = QueueCounters()
        ring.offerTX(frame: ethernetFrame(length: 64))
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 1)
        // The caller pulls again into the same, not yet empty, batch.
        let four = ethernetFrame(length: 92, seed: 2)
        ring.offerTX(frame: four, split: [12, 20, 20, 20, 32])
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 0, "no room now, but it fits an empty batch")
        XCTAssertEqual(counters.snapshot.drops, [:])
        queue.release()
        batch.reset()
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 1)
        XCTAssertEqual(batch.frameBytes(0), four)
    }

    func testPullWithALegacyTenByteHeader() throws {
        let (ring, queue) = try SplitVirtqueue.started(headerLength: 10)
        let frame = ethernetFrame(length: 60)
        ring.offerTX(frame: frame, header: Array(offloadHeader[..<10]))
        let batch = PacketBatch(capacity: 32)
        XCTAssertEqual(queue.pull(into: batch, counters: QueueCounters()), 1)
        XCTAssertEqual(batch.length(of: 0), 60)
        XCTAssertEqual(batch.frameBytes(0), frame, "the frame starts right after the 10 header bytes")
        XCTAssertEqual(batch.headerBytes(0), Array(offloadHeader[..<10]) + [0, 0], "num_buffers is absent, so zero")
    }

    // MARK: RX: push

    func testPushOneFrame() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        let head = ring.offerRX(bufferSizes: [2048])
        let frame = ethernetFrame(length: 1514)
        let batch = PacketBatch(capacity: 32)
        let store = FrameStore()
        store.append(frame, to: batch)
        let counters = QueueCounters()

        queue.push(from: batch, counters: counters)
        let got = ring.receive()
        XCTAssertEqual(got.count, 1)
        XCTAssertEqual(got.first?.frame, frame)
        XCTAssertEqual(got.first?.numBuffers, 1, "§5.1.6.4: 1 without MRG_RXBUF")
        XCTAssertEqual(got.first?.entries, [UsedEntry(id: UInt32(head), length: 12 + 1514)])
        XCTAssertEqual(counters.snapshot, CounterSnapshot(txPackets: 1, txBytes: 1514))
    }

    func testPushPassesTheHeaderThroughAndSetsNumBuffers() throws {
        for mergeable in [false, true] {
            let (ring, queue) = try SplitVirtqueue.started(mergeable: mergeable)
            ring.offerRX(bufferSizes: [2048])
            let batch = PacketBatch(capacity: 32)
            let store = FrameStore()
            store.append(ethernetFrame(length: 200), header: offloadHeader, to: batch)
            queue.push(from: batch, counters: QueueCounters())
            let got = try XCTUnwrap(ring.receive().first)
            XCTAssertEqual(Array(got.header[..<10]), Array(offloadHeader[..<10]), "flags, gso and csum fields unchanged")
            XCTAssertEqual(Array(got.header[10...]), [1, 0], "num_buffers is the device's")
        }
    }

    /// A driver without GUEST_CSUM must never see NEEDS_CSUM or DATA_VALID (virtio 1.2 §5.1.6.4.1),
    /// whether the header lands in one buffer or is split across several.
    func testPushClearsChecksumFlagsForADriverWithoutGuestChecksum() throws {
        for split in [[2048], [5, 7, 2048]] {
            let (ring, queue) = try SplitVirtqueue.started(guestChecksum: false)
            ring.offerRX(bufferSizes: split)
            let batch = PacketBatch(capacity: 32)
            let store = FrameStore()
            var header = offloadHeader
            header[0] |= 0x02  // DATA_VALID too
            store.append(ethernetFrame(length: 200), header: header, to: batch)
            queue.push(from: batch, counters: QueueCounters())
            let got = try XCTUnwrap(ring.receive().first)
            XCTAssertEqual(got.header[0], 0, "flags cleared (split \(split))")
            XCTAssertEqual(Array(got.header[1..<10]), Array(header[1..<10]), "the rest of the header unchanged")
        }
    }

    func testPushIntoMultiDescriptorAndIndirectChains() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        // Linux's "big packets" layout without MRG_RXBUF: header alone, then pages.
        ring.offerRX(bufferSizes: [12, 1000, 1000])
        ring.offerRX(bufferSizes: [12, 700, 900], indirect: true)
        let frames = [ethernetFrame(length: 1514), ethernetFrame(length: 1600, seed: 3)]
        let batch = PacketBatch(capacity: 32)
        let store = FrameStore()
        store.append(frames[0], header: offloadHeader, to: batch, segments: [14, 1000, 500])
        store.append(frames[1], to: batch)
        queue.push(from: batch, counters: QueueCounters())
        let got = ring.receive()
        XCTAssertEqual(got.map(\.frame), frames)
        XCTAssertEqual(got.map(\.numBuffers), [1, 1])
        XCTAssertEqual(got.map { $0.entries.map(\.length) }, [[12 + 1514], [12 + 1600]])
    }

    func testPushAJumboFrameAcrossMergeableBuffers() throws {
        let (ring, queue) = try SplitVirtqueue.started(mergeable: true)
        let heads = (0..<8).map { _ in ring.offerRX(bufferSizes: [1536]) }
        let frame = ethernetFrame(length: 9000)
        let batch = PacketBatch(capacity: 32)
        let store = FrameStore()
        store.append(frame, header: offloadHeader, to: batch, segments: [4000, 5000])
        let counters = QueueCounters()

        queue.push(from: batch, counters: counters)
        let got = ring.receive()
        XCTAssertEqual(got.count, 1)
        let rx = try XCTUnwrap(got.first)
        XCTAssertEqual(rx.numBuffers, 6, "9012 bytes in 1536-byte buffers")
        XCTAssertEqual(rx.frame, frame)
        XCTAssertEqual(Array(rx.header[..<10]), Array(offloadHeader[..<10]))
        XCTAssertEqual(rx.entries.map(\.id), heads[..<6].map(UInt32.init))
        XCTAssertEqual(rx.entries.map(\.length), [1536, 1536, 1536, 1536, 1536, 9012 - 5 * 1536])
        XCTAssertEqual(queue.lastAvail, 6, "two buffers left for the next frame")
        XCTAssertEqual(counters.snapshot, CounterSnapshot(txPackets: 1, txBytes: 9000))
    }

    func testPushManyFramesIntoMergeableBuffers() throws {
        let (ring, queue) = try SplitVirtqueue.started(mergeable: true)
        for _ in 0..<200 { ring.offerRX(bufferSizes: [1536]) }
        let frames = (0..<40).map { ethernetFrame(length: [60, 1514, 3000, 9000][$0 % 4], seed: UInt8($0)) }
        let batch = PacketBatch(capacity: 64)
        let store = FrameStore()
        for f in frames { store.append(f, to: batch) }
        let counters = QueueCounters()
        queue.push(from: batch, counters: counters)
        let got = ring.receive()
        XCTAssertEqual(got.map(\.frame), frames)
        XCTAssertEqual(got.map(\.numBuffers), frames.map { ($0.count + 12 + 1535) / 1536 })
        XCTAssertEqual(counters.snapshot.txPackets, 40)
        XCTAssertEqual(counters.snapshot.drops, [:])
    }

    /// More frames than one run reserves (SplitVirtqueue+WholeFrames.swift), of every
    /// length the in-line copy treats apart (1-3, 4-7, 8-15, 16-256 bytes a segment, and
    /// longer), some in several segments, with a buffer too small for its frame in the middle
    /// of a run: every frame arrives whole, in the order of the chains, each in one chain but
    /// the one that spans the small buffer and the next.
    func testPushWholeFramesInRunsLongerThanOneReservation() throws {
        let (ring, queue) = try SplitVirtqueue.started(mergeable: true)
        let lengths = (0..<150).map { [14, 15, 17, 20, 23, 30, 47, 60, 64, 100, 255, 256, 257, 300, 1514][$0 % 15] }
        var heads: [UInt16] = []
        for i in 0..<151 { heads.append(ring.offerRX(bufferSizes: [i == 70 ? 40 : 2048])) }
        let batch = PacketBatch(capacity: 256)
        let store = FrameStore()
        var frames: [[UInt8]] = []
        for (i, length) in lengths.enumerated() {
            let frame = ethernetFrame(length: length, seed: UInt8(truncatingIfNeeded: i))
            frames.append(frame)
            let cuts = i % 3 == 0 ? [1, 2, 4, length - 7] : i % 3 == 1 ? [length - 9, 9] : [length]
            store.append(frame, header: offloadHeader, to: batch, segments: cuts)
        }
        let counters = QueueCounters()
        queue.push(from: batch, counters: counters)
        let got = ring.receive()
        XCTAssertEqual(got.map(\.frame), frames)
        XCTAssertEqual(got.map(\.numBuffers), (0..<150).map { $0 == 70 ? 2 : 1 }, "frame 70 spans the 40-byte buffer")
        XCTAssertEqual(got.flatMap { $0.entries.map(\.id) }, heads.map(UInt32.init))
        XCTAssertEqual(got[69].entries.map(\.length), [UInt32(12 + lengths[69])])
        XCTAssertEqual(got[70].entries.map(\.length), [40, UInt32(12 + lengths[70] - 40)])
        XCTAssertTrue(got.allSatisfy { Array($0.header[..<10]) == Array(offloadHeader[..<10]) })
        XCTAssertEqual(counters.snapshot, CounterSnapshot(txPackets: 150, txBytes: UInt64(lengths.reduce(0, +))))
        XCTAssertEqual(queue.lastAvail, 151)
        XCTAssertEqual(ring.usedIndex, 151, "one publish for the burst")
    }

    /// A recycled buffer holds a header already, and the push stores the frame's only where it
    /// differs (SplitVirtqueue+WholeFrames.swift): a buffer holding bytes that differ in both
    /// words, one holding another num_buffers, and one holding the very header each end with
    /// the frame's header (num_buffers 1) and the frame after it.
    func testPushWholeFramesIntoBuffersThatHoldAHeaderAlready() throws {
        let (ring, queue) = try SplitVirtqueue.started(mergeable: true)
        let oneBufferHeader: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
        let held: [[UInt8]] = [Array(repeating: 0xEE, count: 12), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0], oneBufferHeader]
        for bytes in held {
            let head = ring.offerRX(bufferSizes: [2048])
            // A split descriptor starts with its buffer's address (virtio 1.2 §2.7.5).
            let address = ring.ram.read(ring.descGPA + UInt64(head) * 16, count: 8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            ring.ram.write(bytes, at: address)
        }
        let batch = PacketBatch(capacity: 32)
        let store = FrameStore()
        let frames = (0..<3).map { ethernetFrame(length: 60, seed: UInt8($0)) }
        for frame in frames { store.append(frame, to: batch) }
        queue.push(from: batch, counters: QueueCounters())
        let got = ring.receive()
        XCTAssertEqual(got.map(\.frame), frames)
        XCTAssertEqual(got.map(\.header), Array(repeating: oneBufferHeader, count: 3))
    }

    func testPushWithALegacyTenByteHeader() throws {
        let (ring, queue) = try SplitVirtqueue.started(headerLength: 10)
        ring.offerRX(bufferSizes: [2048])
        let frame = ethernetFrame(length: 500)
        let batch = PacketBatch(capacity: 32)
        let store = FrameStore()
        store.append(frame, header: offloadHeader, to: batch)
        queue.push(from: batch, counters: QueueCounters())
        let got = ring.receive(headerLength: 10)
        XCTAssertEqual(got.first?.header, Array(offloadHeader[..<10]))
        XCTAssertEqual(got.first?.frame, frame, "the frame starts right after the 10 header bytes")
        XCTAssertEqual(got.first?.entries.first?.length, 510)
    }

    func testPushWithoutRxBuffersDropsAndConsumesNothing() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        let batch = PacketBatch(capacity: 32)
        let store = FrameStore()
        for i in 0..<3 { store.append(ethernetFrame(length: 100, seed: UInt8(i)), to: batch) }
        let counters = QueueCounters()

        queue.push(from: batch, counters: counters)
        XCTAssertEqual(counters.snapshot.drops, [.noRxBuffer: 3])
        XCTAssertEqual(ring.usedIndex, 0)
        XCTAssertEqual(queue.lastAvail, 0)
        XCTAssertTrue(queue.isRunning)

        ring.offerRX(bufferSizes: [2048])
        queue.push(from: batch, counters: counters)
        XCTAssertEqual(ring.receive().map(\.frame), [ethernetFrame(length: 100, seed: 0)])
        XCTAssertEqual(counters.snapshot.drops, [.noRxBuffer: 5])
        XCTAssertEqual(counters.snapshot.txPackets, 1)
    }

    func testAFrameNeedingMoreMergeableBuffersThanPostedTakesNone() throws {
        let (ring, queue) = try SplitVirtqueue.started(mergeable: true)
        for _ in 0..<3 { ring.offerRX(bufferSizes: [1536]) }
        let batch = PacketBatch(capacity: 32)
        let store = FrameStore()
        store.append(ethernetFrame(length: 9000), to: batch)
        let small = ethernetFrame(length: 60)
        store.append(small, to: batch)
        let counters = QueueCounters()

        queue.push(from: batch, counters: counters)
        XCTAssertEqual(counters.snapshot.drops, [.noRxBuffer: 1])
        let got = ring.receive()
        XCTAssertEqual(got.map(\.frame), [small], "the jumbo frame's partial copy is not published")
        XCTAssertEqual(got.first?.entries.first?.id, 0, "the small frame gets the first buffer")
        XCTAssertEqual(queue.lastAvail, 1)
    }

    func testAFrameLargerThanTheBufferWithoutMergeableBuffers() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        ring.offerRX(bufferSizes: [1000])
        let batch = PacketBatch(capacity: 32)
        let store = FrameStore()
        store.append(ethernetFrame(length: 1514), to: batch)
        let counters = QueueCounters()

        queue.push(from: batch, counters: counters)
        XCTAssertEqual(counters.snapshot.drops, [.rxBufferTooSmall: 1])
        XCTAssertEqual(ring.usedIndex, 0)
        XCTAssertEqual(queue.lastAvail, 0, "the buffer stays with the device for a frame that fits")
        XCTAssertTrue(queue.isRunning)

        // The same with a second buffer posted, and a frame that fits after the big one.
        ring.offerRX(bufferSizes: [1000])
        batch.reset()
        store.reset()
        store.append(ethernetFrame(length: 1514), to: batch)
        let fits = ethernetFrame(length: 900)
        store.append(fits, to: batch)
        queue.push(from: batch, counters: counters)
        XCTAssertEqual(counters.snapshot.drops, [.rxBufferTooSmall: 2])
        XCTAssertEqual(ring.receive().map(\.frame), [fits])
    }

    // MARK: Stopping and restarting

    func testStopReturnsTheNextAvailIndex() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        for i in 0..<5 { ring.offerTX(frame: ethernetFrame(length: 64, seed: UInt8(i))) }
        let batch = PacketBatch(capacity: 3)
        XCTAssertEqual(queue.pull(into: batch, counters: QueueCounters()), 3)
        queue.release()

        XCTAssertEqual(queue.stop(), 3, "GET_VRING_BASE: the next avail index to process")
        XCTAssertFalse(queue.isRunning)
        XCTAssertEqual(queue.stop(), 3, "stopping a stopped queue reports the same base")
        batch.reset()
        XCTAssertEqual(queue.pull(into: batch, counters: QueueCounters()), 0, "a stopped queue is not walked")

        // SET_VRING_BASE with what GET_VRING_BASE returned, then start again: nothing replayed, nothing lost.
        queue.baseIndex = 3
        try queue.start(memory: ring.ram.makeGuestMemory())
        XCTAssertEqual(queue.pull(into: batch, counters: QueueCounters()), 2)
        XCTAssertEqual(batch.frameBytes(0), ethernetFrame(length: 64, seed: 3))
        queue.release()
        XCTAssertEqual(ring.usedIndex, 5)
        XCTAssertEqual(queue.stop(), 5)
    }

    func testStopOnAnRxQueue() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        for _ in 0..<4 { ring.offerRX(bufferSizes: [2048]) }
        let batch = PacketBatch(capacity: 32)
        let store = FrameStore()
        store.append(ethernetFrame(length: 64), to: batch)
        store.append(ethernetFrame(length: 64), to: batch)
        queue.push(from: batch, counters: QueueCounters())
        XCTAssertEqual(queue.stop(), 2)
        let counters = QueueCounters()
        queue.push(from: batch, counters: counters)
        XCTAssertEqual(counters.snapshot.drops, [.notReady: 2])
        XCTAssertEqual(ring.usedIndex, 2)
    }

    func testARestartedBackEndResumesFromTheUsedIndex() throws {
        let ram = try GuestRAM.oneRegion()
        let (ring, queue) = try SplitVirtqueue.started(ram)
        let frames = (0..<7).map { ethernetFrame(length: 80, seed: UInt8($0)) }
        for f in frames { ring.offerTX(frame: f) }
        let batch = PacketBatch(capacity: 5)
        XCTAssertEqual(queue.pull(into: batch, counters: QueueCounters()), 5)
        queue.release()

        // A new back-end process knows nothing; the front-end sends base 0.
        let fresh = SplitVirtqueue(index: 0)
        ring.configure(fresh)
        fresh.baseIndex = 0
        try fresh.start(memory: ram.makeGuestMemory())
        XCTAssertEqual(fresh.lastAvail, 5)
        XCTAssertEqual(fresh.usedIndex, 5)
        batch.reset()
        XCTAssertEqual(fresh.pull(into: batch, counters: QueueCounters()), 2)
        XCTAssertEqual(batch.frameBytes(0), frames[5])
        XCTAssertEqual(batch.frameBytes(1), frames[6])
        fresh.release()
        XCTAssertEqual(ring.usedIndex, 7)
    }

    func testFramesPulledButNotReleasedAreOfferedAgainAfterARestart() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        let frames = (0..<3).map { ethernetFrame(length: 80, seed: UInt8($0)) }
        for f in frames { ring.offerTX(frame: f) }
        let batch = PacketBatch(capacity: 32)
        XCTAssertEqual(queue.pull(into: batch, counters: QueueCounters()), 3)
        // Stopped mid-burst: the driver still owns those buffers (used index 0).
        queue.baseIndex = queue.stop()
        XCTAssertEqual(queue.baseIndex, 3)
        try queue.start(memory: ring.ram.makeGuestMemory())
        XCTAssertEqual(queue.lastAvail, 0)
        batch.reset()
        XCTAssertEqual(queue.pull(into: batch, counters: QueueCounters()), 3)
        XCTAssertEqual((0..<3).map { batch.frameBytes($0) }, frames)
    }

    func testStartAsksTheDriverNotToKickAndResetForgetsTheRing() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        XCTAssertEqual(ring.usedFlags, 1, "VRING_USED_F_NO_NOTIFY: the worker polls")
        queue.reset()
        XCTAssertFalse(queue.isRunning)
        XCTAssertEqual(queue.configuration.size, 0)
        XCTAssertEqual(queue.baseIndex, 0)
        XCTAssertEqual(queue.callFD, -1)
        XCTAssertThrowsError(try queue.start(memory: ring.ram.makeGuestMemory()))
    }

    // MARK: Notifications

    /// vring_need_event from §2.7.10, as the driver evaluates it.
    private func needEvent(_ event: UInt16, new: UInt16, old: UInt16) -> Bool {
        (new &- event &- 1) < (new &- old)
    }

    func testEventIndexSignalsExactlyWhenTheDriverAsked() throws {
        let (ring, queue) = try SplitVirtqueue.started(eventIndex: true)
        let call = try EventFD.create()
        queue.callFD = call.rawValue
        let batch = PacketBatch(capacity: 8)
        let counters = QueueCounters()
        var rng = SeededGenerator(seed: 0xE7E7)
        var signals = 0

        // Releases of one frame: a call only when used idx passes used_event.
        ring.usedEvent = 3
        for step in 1...6 {
            ring.offerTX(frame: ethernetFrame(length: 64))
            batch.reset()
            XCTAssertEqual(queue.pull(into: batch, counters: counters), 1)
            queue.release()
            XCTAssertEqual(EventFD.drain(call.rawValue), step == 4 ? 1 : 0, "used idx \(step), used_event 3")
        }

        // Bursts of random size against a moving used_event, across the 16-bit wrap.
        for _ in 0..<300 {
            let old = ring.usedIndex
            ring.usedEvent = old &+ UInt16.random(in: 0...12, using: &rng) &- 4
            let n = Int.random(in: 1...8, using: &rng)
            for _ in 0..<n { ring.offerTX(frame: ethernetFrame(length: 64)) }
            batch.reset()
            XCTAssertEqual(queue.pull(into: batch, counters: counters), n)
            queue.release()
            let expected = needEvent(ring.usedEvent, new: ring.usedIndex, old: old)
            XCTAssertEqual(EventFD.drain(call.rawValue), expected ? 1 : 0,
                           "event \(ring.usedEvent) old \(old) new \(ring.usedIndex)")
            if expected { signals += 1 }
        }
        XCTAssertGreaterThan(signals, 20)
        XCTAssertLessThan(signals, 280)
    }

    func testEventIndexOnAnRxQueue() throws {
        let (ring, queue) = try SplitVirtqueue.started(eventIndex: true, mergeable: true)
        let call = try EventFD.create()
        queue.callFD = call.rawValue
        for _ in 0..<64 { ring.offerRX(bufferSizes: [1536]) }
        let store = FrameStore()
        let batch = PacketBatch(capacity: 8)

        ring.usedEvent = 10
        store.append(ethernetFrame(length: 9000), to: batch)   // used idx 0 → 6
        queue.push(from: batch, counters: QueueCounters())
        XCTAssertEqual(EventFD.drain(call.rawValue), 0)
        queue.push(from: batch, counters: QueueCounters())       // 6 → 12 passes 10
        XCTAssertEqual(EventFD.drain(call.rawValue), 1)
        queue.push(from: batch, counters: QueueCounters())       // 12 → 18
        XCTAssertEqual(EventFD.drain(call.rawValue), 0)
        XCTAssertEqual(ring.usedIndex, 18)
    }

    func testNoInterruptFlagIsHonouredWithoutEventIndex() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        let call = try EventFD.create()
        queue.callFD = call.rawValue
        let batch = PacketBatch(capacity: 8)
        let counters = QueueCounters()
        ring.usedEvent = 1000   // meaningless without EVENT_IDX

        for suppressed in [true, false, true, false] {
            ring.availFlags = suppressed ? 1 : 0   // VRING_AVAIL_F_NO_INTERRUPT
            ring.offerTX(frame: ethernetFrame(length: 64))
            batch.reset()
            XCTAssertEqual(queue.pull(into: batch, counters: counters), 1)
            XCTAssertEqual(EventFD.drain(call.rawValue), 0, "nothing published yet")
            queue.release()
            XCTAssertEqual(EventFD.drain(call.rawValue), suppressed ? 0 : 1)
        }

        // No call descriptor: publishing still works.
        queue.callFD = -1
        ring.offerTX(frame: ethernetFrame(length: 64))
        batch.reset()
        XCTAssertEqual(queue.pull(into: batch, counters: counters), 1)
        queue.release()
        XCTAssertEqual(ring.usedIndex, 5)
    }

    // MARK: Asking for kicks again (before a worker sleeps)

    func testEnablingNotificationsWithoutEventIndexClearsNoNotify() throws {
        let (ring, queue) = try SplitVirtqueue.started()
        XCTAssertFalse(queue.enableNotifications(), "nothing pending: safe to sleep")
        XCTAssertEqual(ring.usedFlags, 0)
        queue.disableNotifications()
        XCTAssertEqual(ring.usedFlags, 1)
    }

    func testEnablingNotificationsWithEventIndexPublishesTheNextSlot() throws {
        let (ring, queue) = try SplitVirtqueue.started(eventIndex: true)
        ring.offerTX(frame: ethernetFrame(length: 60))
        XCTAssertTrue(queue.enableNotifications(), "a chain is pending: poll again, do not sleep")
        let batch = PacketBatch(capacity: 8)
        XCTAssertEqual(queue.pull(into: batch, counters: QueueCounters()), 1)
        queue.release()
        XCTAssertFalse(queue.enableNotifications())
        // The driver's side: avail_event sits right after used.ring[size].
        let availEvent = ring.ram.read(ring.usedGPA + 4 + 8 * UInt64(ring.size), count: 2)
        let event = UInt16(availEvent[0]) | UInt16(availEvent[1]) << 8
        XCTAssertEqual(event, 1)
        // Adding one more chain (index 1 -> 2) now needs a kick, by the driver's own rule.
        XCTAssertTrue(needEvent(event, new: 2, old: 1))
    }
}
