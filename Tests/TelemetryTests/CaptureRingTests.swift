import Packets
import XCTest

final class CaptureRingTests: XCTestCase {
    /// The smallest ring: room for one largest record and a little more.
    let capacity = 1 << 17

    private func batch(_ frames: [[UInt8]]) -> (PacketBatch, [UnsafeMutableRawPointer]) {
        let batch = PacketBatch(capacity: 64)
        var storage: [UnsafeMutableRawPointer] = []
        for (i, frame) in frames.enumerated() {
            let p = UnsafeMutableRawPointer.allocate(byteCount: max(frame.count, 1), alignment: 8)
            p.copyMemory(from: frame, byteCount: frame.count)
            storage.append(p)
            batch.append(base: p, length: UInt32(frame.count), token: UInt32(i))
        }
        return (batch, storage)
    }

    private func drained(_ ring: CaptureRing) -> [(UInt16, CaptureDirection, UInt64, Int, [UInt8])] {
        var out: [(UInt16, CaptureDirection, UInt64, Int, [UInt8])] = []
        ring.drain { out.append(($0.port, $0.direction, $0.microseconds, $0.originalLength, Array($0.bytes))) }
        return out
    }

    func testRecordsComeOutAsTheyWentIn() {
        let ring = CaptureRing(capacity: capacity, ports: 4)
        let (b, storage) = batch([[1, 2, 3], Array(repeating: 9, count: 100)])
        defer { storage.forEach { $0.deallocate() } }
        XCTAssertTrue(ring.append(frame: 0, of: b, port: 1, direction: .receive, microseconds: 42, snapLength: 65535))
        XCTAssertTrue(ring.append(frame: 1, of: b, port: 3, direction: .transmit, microseconds: 43, snapLength: 10))
        let out = drained(ring)
        XCTAssertEqual(out.count, 2)
        XCTAssertEqual(out[0].0, 1); XCTAssertEqual(out[0].1, .receive); XCTAssertEqual(out[0].2, 42)
        XCTAssertEqual(out[0].3, 3); XCTAssertEqual(out[0].4, [1, 2, 3])
        XCTAssertEqual(out[1].0, 3); XCTAssertEqual(out[1].1, .transmit); XCTAssertEqual(out[1].3, 100)
        XCTAssertEqual(out[1].4, Array(repeating: 9, count: 10))
        XCTAssertEqual(ring.used, 0)
    }

    /// A frame in several segments is gathered into one record.
    func testSegmentsAreGathered() {
        let ring = CaptureRing(capacity: capacity, ports: 1)
        let b = PacketBatch(capacity: 4)
        let a = UnsafeMutableRawPointer.allocate(byteCount: 4, alignment: 8)
        let c = UnsafeMutableRawPointer.allocate(byteCount: 4, alignment: 8)
        defer { a.deallocate(); c.deallocate() }
        a.copyMemory(from: [1, 2, 3, 4] as [UInt8], byteCount: 4)
        c.copyMemory(from: [5, 6, 7, 8] as [UInt8], byteCount: 4)
        b.setSegment(0, base: a, length: 4)
        b.setSegment(1, base: c, length: 4)
        b.appendFrame(segments: 0..<2, length: 8, token: 0)
        ring.append(frame: 0, of: b, port: 0, direction: .receive, microseconds: 1, snapLength: 6)
        XCTAssertEqual(drained(ring).first?.4, [1, 2, 3, 4, 5, 6])
    }

    /// Records of odd sizes go round the block many times; none is split or lost.
    func testWrapsAroundTheEndWithoutSplittingARecord() {
        let ring = CaptureRing(capacity: capacity, ports: 1)
        var seen = 0
        for round in 0..<400 {
            let frame = (0..<(997 + round % 13)).map { UInt8(truncatingIfNeeded: $0 &+ round) }
            let (b, storage) = batch(Array(repeating: frame, count: 7))
            for f in 0..<7 {
                XCTAssertTrue(ring.append(frame: f, of: b, port: 0, direction: .transmit, microseconds: UInt64(round),
                                          snapLength: 65535))
            }
            storage.forEach { $0.deallocate() }
            for record in drained(ring) {
                XCTAssertEqual(record.4, frame)
                XCTAssertEqual(record.2, UInt64(round))
                seen += 1
            }
        }
        XCTAssertEqual(seen, 2800)
        XCTAssertEqual(ring.dropped(port: 0, direction: .transmit), 0)
    }

    /// A full ring refuses and counts, per port and direction; draining makes room again.
    func testFullRingCountsADropAndNeverBlocks() {
        let ring = CaptureRing(capacity: capacity, ports: 2)
        let (b, storage) = batch([Array(repeating: 1, count: 1500)])
        defer { storage.forEach { $0.deallocate() } }
        var accepted = 0
        for _ in 0..<200 where ring.append(frame: 0, of: b, port: 1, direction: .receive, microseconds: 0, snapLength: 65535) {
            accepted += 1
        }
        XCTAssertEqual(accepted, capacity / (CaptureRing.headerSize + 1504))
        XCTAssertEqual(ring.dropped(port: 1, direction: .receive), UInt64(200 - accepted))
        XCTAssertEqual(ring.dropped(port: 1, direction: .transmit), 0)
        XCTAssertEqual(ring.dropped(port: 0, direction: .receive), 0)
        XCTAssertEqual(drained(ring).count, accepted)
        XCTAssertTrue(ring.append(frame: 0, of: b, port: 1, direction: .receive, microseconds: 0, snapLength: 65535))
    }
}
