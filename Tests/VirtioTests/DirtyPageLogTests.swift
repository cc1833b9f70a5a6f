import Glibc
import Packets
import Platform
import TestSupport
import Virtio
import XCTest

/// Live migration: while the front-end logs, every byte Ferry writes into guest
/// memory lies in a page marked in the log (whole frames, the segments of a
/// super-frame cut straight into the chains, used entries, the direct path's). A mock driver on memfd guest memory
/// (two regions, so a buffer crosses from one into the other) and a log in a
/// memfd; the memory is filled with a pattern first and compared byte by byte
/// afterwards: every byte that changed must be in a marked page.
final class DirtyPageLogTests: XCTestCase {
    /// A header with fields set, num_buffers for the device to overwrite.
    let header: [UInt8] = [0x01, 0x01, 54, 0, 0xA8, 0x05, 34, 0, 16, 0, 0xEF, 0xBE]

    /// A log covering `ram`, at an offset in its memfd that is not page-aligned.
    private func makeLog(for ram: GuestRAM) throws -> (SharedMemory, DirtyPageLog) {
        let end = ram.regions.map { $0.guestPhysicalAddress + $0.size }.max()!
        let bytes = (end / DirtyPageLog.pageSize + 7) / 8
        let file = try SharedMemory(length: Int(bytes + 0x100 + 0xfff) / 0x1000 * 0x1000, name: "ferry-test-log")
        return (file, try DirtyPageLog(fd: file.fd.rawValue, size: bytes, offset: 0x100))
    }

    private func snapshot(_ ram: GuestRAM) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: ram.shared.base, count: ram.shared.length))
    }

    /// The guest-physical addresses of the bytes that differ from `before`.
    private func changedAddresses(_ ram: GuestRAM, since before: [UInt8]) -> [UInt64] {
        let now = UnsafeRawBufferPointer(start: ram.shared.base, count: ram.shared.length)
        var changed: [UInt64] = []
        for r in ram.regions {
            for offset in 0..<Int(r.size) where now[Int(r.mmapOffset) + offset] != before[Int(r.mmapOffset) + offset] {
                changed.append(r.guestPhysicalAddress + UInt64(offset))
            }
        }
        return changed
    }

    private enum Layout { case split, packed }

    private func makeRing(_ layout: Layout, ram: GuestRAM, at gpa: UInt64, buffers: Range<UInt64>, index: Int)
        -> (any MockDriverRing, Virtqueue, any VirtqueueControl)
    {
        switch layout {
        case .split:
            let q = SplitVirtqueue(index: index)
            return (MockSplitRing(ram: ram, size: 64, at: gpa, buffers: buffers), .split(q), q)
        case .packed:
            // 256 descriptors fill a page: the device's event structure lies on the next.
            let q = PackedVirtqueue(index: index)
            return (MockPackedRing(ram: ram, size: 256, at: gpa, buffers: buffers), .packed(q), q)
        }
    }

    /// Both rings of a queue pair in two-region RAM, RX buffers laid across the
    /// regions' boundary; RX buffers and TX frames offered by the driver. Returns
    /// what changed, the log, and where the ring structures the device writes lie
    /// (the used rings; for packed rings the descriptor rings and device event areas).
    private func driveEveryWrite(_ layout: Layout, logging: Bool, inOrder: Bool = false) throws
        -> (changed: [UInt64], log: DirtyPageLog, ringGPAs: [UInt64])
    {
        let ram = try GuestRAM.twoRegions(size: 4 << 20)
        let half = UInt64(2 << 20)
        memset(ram.shared.base, 0xEE, ram.shared.length)
        let rxBuffers = ram.base + half - 0x2F00 ..< ram.base + half + 0x40000
        let txBuffers = ram.base + 0x10000 ..< ram.base + 0x80000
        let (logFile, log) = try makeLog(for: ram)
        _ = logFile
        let (rx, rxq, rxControl) = makeRing(layout, ram: ram, at: ram.base, buffers: rxBuffers, index: 0)
        let (tx, txq, txControl) = makeRing(layout, ram: ram, at: ram.base + 0x4000, buffers: txBuffers, index: 1)
        var ringGPAs: [UInt64] = []
        for (ring, control) in [(rx, rxControl), (tx, txControl)] {
            ring.configure(control, eventIndex: true, mergeableBuffers: true, inOrder: inOrder)
            (ring as? MockPackedRing)?.readsBatchesInOrder = inOrder
            let areas = ring.areaGPAs
            // A split ring's used ring is logged where the front-end asks; a packed ring has none.
            control.configuration.setDirtyLog(logging ? log : nil,
                                              usedRing: layout == .split ? GuestAddress(areas.used) : nil)
            ringGPAs += layout == .split ? [areas.used] : [areas.desc, areas.used]
        }
        let controls = [rxControl, txControl]
        for _ in 0..<24 { rx.offerRX(bufferSizes: [1536]) }
        rx.offerRX(bufferSizes: [1000, 1000])   // for the direct path: a chain of two buffers
        for i in 0..<5 { tx.offerTX(frame: ethernetFrame(length: 60 + 300 * i)) }
        let before = snapshot(ram)

        let memory = try ram.makeGuestMemory()
        for q in controls { try q.start(memory: memory) }

        // RX: frames of one buffer and a jumbo frame over mergeable buffers (num_buffers written last).
        let store = FrameStore()
        let batch = PacketBatch(capacity: 32)
        for length in [60, 1514, 9000, 700] { store.append(ethernetFrame(length: length, seed: 3), header: header, to: batch) }
        rxq.push(from: batch, counters: QueueCounters())
        XCTAssertEqual(rx.receive().count, 4)
        // A TSO super-frame for a driver without GUEST_TSO: segmented straight into the chains.
        let gso = GSOTestFrame(payloadLength: 4000, segmentSize: 1448)
        var gsoHeader = [UInt8](repeating: 0, count: 12)
        gsoHeader.withUnsafeMutableBytes { gso.header.store(to: $0.baseAddress!) }
        let superFrame = PacketBatch(capacity: 1)
        store.append(gso.bytes, header: gsoHeader, to: superFrame)
        let segmented = QueueCounters()
        rxq.push(from: superFrame, counters: segmented, segmenter: SoftwareSegmenter(), acceptance: .partialChecksum)
        XCTAssertEqual(segmented.snapshot.offloads[.segmentsOut], 3)
        XCTAssertEqual(rx.receive().count, 3)
        // Eight frames of one buffer each from a line's start: a packed ring takes them four at a time.
        let lines = PacketBatch(capacity: 8)
        for i in 0..<8 { store.append(ethernetFrame(length: 60 + 180 * i, seed: 5), header: header, to: lines) }
        rxq.push(from: lines, counters: QueueCounters())
        XCTAssertEqual(rx.receive().count, 8)
        // TX: used entries written by pull, published by release.
        let pulled = PacketBatch(capacity: 32)
        XCTAssertEqual(txq.pull(into: pulled, counters: QueueCounters()), 5)
        txq.release()
        // The direct TAP path: the kernel's read, then the prefix, into a lent chain.
        for _ in 0..<rxq.postedBuffers(atMost: .max) - 1 {
            let b = PacketBatch(capacity: 1)
            store.append(ethernetFrame(length: 100, seed: 9), to: b)
            rxq.push(from: b, counters: QueueCounters())
        }
        let pieces = UnsafeMutablePointer<iovec>.allocate(capacity: 8)
        defer { pieces.deallocate() }
        guard case .chain(let head, let n, _) = rxq.nextChain(into: pieces, capacity: 8, want: 1800, memory: memory) else {
            XCTFail("no chain for the direct path")
            return ([], log, [])
        }
        let prefix = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 8)
        defer { prefix.deallocate() }
        memset(prefix, 0x11, 32)
        memset(pieces[0].iov_base, 0x22, pieces[0].iov_len)   // what readv would put there
        memset(pieces[1].iov_base, 0x33, 300)
        let length = pieces[0].iov_len + 300
        if logging {
            rxq.commitChain(head: head, pieces: pieces, count: n, length: length, prefix: prefix, prefixLength: 26,
                            writes: LoggedWrites(log: log, memory: memory))
        } else {
            rxq.commitChain(head: head, pieces: pieces, count: n, length: length, prefix: prefix, prefixLength: 26)
        }
        rxq.publishCommitted()
        // Asking to be kicked writes into the ring: avail_event, or the device's event structure.
        _ = rxq.enableNotifications()
        _ = txq.enableNotifications()
        return (changedAddresses(ram, since: before), log, ringGPAs)
    }

    private func assertEveryWriteIsMarked(_ layout: Layout, inOrder: Bool = false) throws {
        let (changed, log, rings) = try driveEveryWrite(layout, logging: true, inOrder: inOrder)
        XCTAssertGreaterThan(changed.count, 12_000, "frames, headers, used entries and indexes were written")
        let unmarked = changed.filter { !log.isMarked(page: $0 / DirtyPageLog.pageSize) }
        XCTAssertEqual(unmarked.count, 0, "written but not marked: \(unmarked.prefix(8).map { String($0, radix: 16) })")
        for ring in rings { XCTAssertTrue(log.isMarked(page: ring / DirtyPageLog.pageSize)) }
        let half = UInt64(0x4000_0000 + (2 << 20))
        XCTAssertTrue(changed.contains { $0 >= half } && changed.contains { $0 < half }, "both regions written")
    }

    func testEveryByteFerryWritesLiesInAMarkedPage() throws {
        try assertEveryWriteIsMarked(.split)
    }

    /// The same on packed rings, where the device also writes the used
    /// descriptors back over the descriptor ring and its own event structure.
    func testEveryByteFerryWritesIntoPackedRingsLiesInAMarkedPage() throws {
        try assertEveryWriteIsMarked(.packed)
    }

    /// With IN_ORDER a packed TX burst is marked used by one descriptor: that one is marked.
    func testEveryByteFerryWritesIntoInOrderPackedRingsLiesInAMarkedPage() throws {
        try assertEveryWriteIsMarked(.packed, inOrder: true)
    }

    func testNothingIsMarkedWhileLoggingIsOff() throws {
        for layout in [Layout.split, .packed] {
            let (changed, log, _) = try driveEveryWrite(layout, logging: false)
            XCTAssertGreaterThan(changed.count, 12_000)
            let marked = (0..<log.byteCount * 8).filter { log.isMarked(page: $0) }
            XCTAssertEqual(marked, [], "\(layout)")
        }
    }

    /// A burst of used descriptors that wraps round a packed ring of two pages
    /// marks the slots at its start too: the front-end cleared the log after the
    /// first burst, and the second ends in the ring's first page.
    func testUsedDescriptorsThatWrapRoundAPackedRingMarkBothEnds() throws {
        let ram = try GuestRAM.oneRegion()
        let ring = MockPackedRing(ram: ram, size: 512)
        let txq = PackedVirtqueue(index: 1)
        ring.configure(txq)
        let (file, log) = try makeLog(for: ram)
        txq.configuration.setDirtyLog(log, usedRing: nil)
        try txq.start(memory: ram.makeGuestMemory())
        let firstPage = ring.ringGPA / DirtyPageLog.pageSize
        for burst in 0..<2 {
            for _ in 0..<300 { ring.offerTX(frame: ethernetFrame(length: 60)) }
            XCTAssertEqual(txq.pull(into: PacketBatch(capacity: 300), counters: QueueCounters()), 300)
            txq.release()
            XCTAssertEqual(ring.usedEntries().count, 300)
            // The front-end read and cleared the log.
            if burst == 0 { memset(file.base, 0, file.length) }
        }
        XCTAssertTrue(log.isMarked(page: firstPage), "slots 0-87, after the wrap")
        XCTAssertTrue(log.isMarked(page: firstPage + 1), "slots 300-511")
    }

    func testTheUsedRingIsMarkedWhereTheFrontEndAsksNotWhereItLies() throws {
        let ram = try GuestRAM.oneRegion()
        let ring = MockSplitRing(ram: ram, size: 16)
        let txq = SplitVirtqueue(index: 1)
        ring.configure(txq)
        let (file, log) = try makeLog(for: ram)
        _ = file
        // log_guest_addr may lie outside guest memory (vhost-user.rst): page 5 here.
        txq.configuration.setDirtyLog(log, usedRing: GuestAddress(5 * DirtyPageLog.pageSize))
        try txq.start(memory: ram.makeGuestMemory())
        ring.offerTX(frame: ethernetFrame(length: 60))
        XCTAssertEqual(txq.pull(into: PacketBatch(capacity: 4), counters: QueueCounters()), 1)
        txq.release()
        XCTAssertTrue(log.isMarked(page: 5))
        XCTAssertFalse(log.isMarked(page: ring.usedGPA / DirtyPageLog.pageSize))
    }

    func testMarksCoverEveryPageOfARangeAndNothingPastTheLog() throws {
        let file = try SharedMemory(length: 4096, name: "ferry-test-log")
        let log = try DirtyPageLog(fd: file.fd.rawValue, size: 2, offset: 0)
        XCTAssertEqual(log.coveredEnd, 16 * DirtyPageLog.pageSize)
        log.mark(GuestAddress(0x1fff), length: 2)            // pages 1 and 2
        log.mark(GuestAddress(15 * 0x1000 + 5), length: 0x5000)  // page 15, then past the log: ignored
        log.mark(GuestAddress(UInt64.max - 3), length: 16)     // wraps: ignored
        XCTAssertEqual((0..<16).filter { log.isMarked(page: $0) }, [1, 2, 15])
        XCTAssertEqual(file.base.load(fromByteOffset: 2, as: UInt8.self), 0, "nothing written past the log")
        XCTAssertTrue(log.covers(0, length: 16 * 4096))
        XCTAssertFalse(log.covers(1, length: 16 * 4096))
    }

    func testALogThatCannotBeMappedSafelyIsRefused() throws {
        let file = try SharedMemory(length: 4096, name: "ferry-test-log")
        XCTAssertThrowsError(try DirtyPageLog(fd: file.fd.rawValue, size: 0, offset: 0)) {
            XCTAssertEqual($0 as? DirtyPageLogError, .zeroSize)
        }
        XCTAssertThrowsError(try DirtyPageLog(fd: file.fd.rawValue, size: 4096, offset: 1)) {
            XCTAssertEqual($0 as? DirtyPageLogError, .fileTooShort(fileSize: 4096, needed: 4097))
        }
        XCTAssertThrowsError(try DirtyPageLog(fd: file.fd.rawValue, size: 8, offset: UInt64.max - 4)) {
            XCTAssertEqual($0 as? DirtyPageLogError, .wraps(size: 8, offset: UInt64.max - 4))
        }
        let event = try EventFD.create()
        XCTAssertThrowsError(try DirtyPageLog(fd: event.rawValue, size: 8, offset: 0)) {
            XCTAssertEqual($0 as? DirtyPageLogError, .notAFile(.eventfd))
        }
    }
}
