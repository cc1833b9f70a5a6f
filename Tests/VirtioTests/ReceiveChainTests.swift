import Glibc
import Platform
import TestSupport
import Virtio
import XCTest

/// Lending an RX chain to someone else's writer (SplitVirtqueue+Receive.swift):
/// the chain is listed with push's checks, consumed only on commit, and the
/// private prefix lands in its first bytes however the buffers are cut.
final class ReceiveChainTests: XCTestCase {
    private func started(_ ram: GuestRAM? = nil, guestChecksum: Bool = true) throws -> (MockSplitRing, SplitVirtqueue) {
        try SplitVirtqueue.started(ram, size: 16, mergeable: true, guestChecksum: guestChecksum)
    }

    private let pieces = UnsafeMutablePointer<iovec>.allocate(capacity: 8)
    deinit { pieces.deallocate() }

    func testAChainIsListedCommittedWithThePrefixAcrossPiecesAndPublishedOnce() throws {
        let (ring, queue) = try started(guestChecksum: false)
        let head = ring.offerRX(bufferSizes: [10, 20, 2048])
        guard case .chain(let h, let n, let bytes) = queue.nextChain(into: pieces, capacity: 8, want: 1000) else {
            return XCTFail("no chain")
        }
        XCTAssertEqual(h, head)
        XCTAssertEqual(n, 3)
        XCTAssertEqual(bytes, 2078)
        XCTAssertEqual((0..<n).map { pieces[$0].iov_len }, [10, 20, 2048])
        XCTAssertEqual(queue.postedBuffers, 1, "listing consumes nothing")

        // The writer fills the chain past the prefix; the prefix comes from private memory.
        let frame = ethernetFrame(length: 100)
        let prefix = UnsafeMutableRawPointer.allocate(byteCount: 26, alignment: 8)
        defer { prefix.deallocate() }
        let header: [UInt8] = [0x03, 0, 0, 0, 0, 0, 34, 0, 6, 0, 0x55, 0x55]
        (header + frame[..<14]).withUnsafeBytes { prefix.copyMemory(from: $0.baseAddress!, byteCount: 26) }
        let rest = Array(frame[14...])
        rest.withUnsafeBytes { src in
            // 26 bytes into the chain: 4 bytes into the 20-byte piece.
            memcpy(pieces[1].iov_base! + 16, src.baseAddress!, 4)
            memcpy(pieces[2].iov_base!, src.baseAddress! + 4, rest.count - 4)
        }
        queue.commitChain(head: h, pieces: pieces, count: n, length: 112, prefix: prefix, prefixLength: 26)
        XCTAssertEqual(ring.usedIndex, 0, "not published before the burst ends")
        queue.publishCommitted()
        let got = ring.receive()
        XCTAssertEqual(got.count, 1)
        XCTAssertEqual(got.first?.frame, frame)
        XCTAssertEqual(got.first?.header, [0, 0, 0, 0, 0, 0, 34, 0, 6, 0, 1, 0], "flags masked, num_buffers 1")
        XCTAssertEqual(got.first?.entries, [UsedEntry(id: UInt32(head), length: 112)])
        XCTAssertEqual(queue.postedBuffers, 0)
    }

    func testNoChainASmallChainAndTooManyPiecesConsumeNothing() throws {
        let (ring, queue) = try started()
        guard case .none = queue.nextChain(into: pieces, capacity: 8, want: 100) else { return XCTFail("a chain from nowhere") }
        ring.offerRX(bufferSizes: [64, 64])
        guard case .unsuitable = queue.nextChain(into: pieces, capacity: 8, want: 129) else { return XCTFail("128 bytes hold 129") }
        guard case .unsuitable = queue.nextChain(into: pieces, capacity: 1, want: 100) else { return XCTFail("two pieces in one") }
        guard case .chain(_, 2, 128) = queue.nextChain(into: pieces, capacity: 8, want: 128) else { return XCTFail("exact fit") }
        XCTAssertTrue(queue.isRunning)
        XCTAssertEqual(queue.postedBuffers, 1)
    }

    func testABufferAcrossTwoRegionsIsListedInTwoPieces() throws {
        let ram = try GuestRAM.twoRegions(size: 4 << 20)
        let (ring, queue) = try started(ram)
        let boundary = ram.regions[1].guestPhysicalAddress
        ring.offerChain([(address: boundary - 100, length: 2000, writable: true)])
        guard case .chain(_, 2, 2000) = queue.nextChain(into: pieces, capacity: 8, want: 2000) else {
            return XCTFail("not two pieces")
        }
        XCTAssertEqual(pieces[0].iov_len, 100)
        XCTAssertEqual(pieces[1].iov_len, 1900)
    }

    func testAReadOnlyDescriptorOrAnAddressOutsideMemoryStopsTheQueue() throws {
        for (name, writable, outside) in [("read-only", false, false), ("outside", true, true)] {
            let (ring, queue) = try started()
            let address = outside ? ring.ram.base + (1 << 30) : ring.allocateBuffer(2048)
            ring.offerChain([(address: address, length: 2048, writable: writable)])
            guard case .broken = queue.nextChain(into: pieces, capacity: 8, want: 1000) else { return XCTFail(name) }
            XCTAssertFalse(queue.isRunning, name)
            XCTAssertEqual(queue.error, outside ? .descriptorAddressInvalid(address: address, length: 2048) : .readableInDeviceChain,
                           name)
        }
    }
}
