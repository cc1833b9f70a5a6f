import Packets
import TestSupport
import XCTest

/// Partial checksums (NEEDS_CSUM) finished in software must give exactly the
/// bytes a full computation gives; a request outside the frame is refused.
final class ChecksumCompletionTests: XCTestCase {
    /// NEEDS_CSUM, no GSO, csum_start and csum_offset little-endian.
    private func header(start: Int, offset: Int, flags: UInt8 = 1) -> [UInt8] {
        [flags, 0, 0, 0, 0, 0, UInt8(start & 0xff), UInt8(start >> 8), UInt8(offset & 0xff), UInt8(offset >> 8), 0, 0]
    }

    /// Runs `complete` on a private copy of `frame`; returns the verdict and the bytes after it.
    private func complete(_ frame: [UInt8], header: [UInt8]) -> (Bool, [UInt8]) {
        var copy = frame
        let done = copy.withUnsafeMutableBytes { bytes in
            header.withUnsafeBytes { ChecksumCompletion.complete(frame: bytes.baseAddress!, length: bytes.count, header: $0.baseAddress!) }
        }
        return (done, copy)
    }

    func testUDPFramesOfEveryParityBecomeFullyChecksummed() {
        for size in [42, 43, 60, 61, 333, 1514] {
            let partial = udpFrame(sourcePort: UInt16(size), size: size, partialChecksum: true)
            let (done, finished) = complete(partial, header: header(start: 34, offset: 6))
            XCTAssertTrue(done)
            XCTAssertEqual(udpChecksum(of: finished), 0, "size \(size)")
            // The same as computing it from scratch over a zeroed field.
            var expected = partial
            expected[40] = 0
            expected[41] = 0
            var sum = ~onesComplementSum(pseudoHeader(udpLength: size - 34)[...] + expected[34...])
            if sum == 0 { sum = 0xFFFF }
            expected[40] = UInt8(sum >> 8)
            expected[41] = UInt8(sum & 0xff)
            XCTAssertEqual(finished, expected, "size \(size)")
        }
    }

    func testTCPFramesBecomeByteIdenticalToAFullComputation() {
        for size in [54, 55, 100, 1001, 1514, 9014] {
            let (done, finished) = complete(tcpFrame(size: size, partialChecksum: true), header: header(start: 34, offset: 16))
            XCTAssertTrue(done)
            XCTAssertEqual(finished, tcpFrame(size: size), "size \(size)")
        }
    }

    /// A sum that folds to 0 is stored as 0xFFFF, as skb_checksum_help does
    /// (CSUM_MANGLED_0); for UDP, 0 would mean "no checksum" (RFC 768).
    func testAChecksumOfZeroIsStoredAsAllOnes() {
        var frame = udpFrame(sourcePort: 7, size: 100, partialChecksum: true)
        // Make the UDP sum come out as 0: the first payload word balances the rest.
        frame[42] = 0
        frame[43] = 0
        let rest = onesComplementSum(frame[34...])
        frame[42] = UInt8(~rest >> 8)
        frame[43] = UInt8(~rest & 0xff)
        let (done, finished) = complete(frame, header: header(start: 34, offset: 6))
        XCTAssertTrue(done)
        XCTAssertEqual(Array(finished[40..<42]), [0xff, 0xff])
        XCTAssertEqual(udpChecksum(of: finished), 0)
    }

    func testWithoutNeedsChecksumNothingIsTouched() {
        let frame = udpFrame(sourcePort: 1, size: 80, partialChecksum: true)
        for flags: UInt8 in [0, 2] {
            let (done, after) = complete(frame, header: header(start: 2000, offset: 2000, flags: flags))
            XCTAssertTrue(done)
            XCTAssertEqual(after, frame)
        }
    }

    /// A guest may name any offsets: each outside the frame is refused and writes nothing.
    func testRequestsOutsideTheFrameAreRefused() {
        let frame = udpFrame(sourcePort: 1, size: 80, partialChecksum: true)
        for (start, offset) in [(80, 0), (79, 0), (78, 1), (34, 45), (0xFFFF, 0xFFFF), (34, 0xFFFF), (200, 6)] {
            let (done, after) = complete(frame, header: header(start: start, offset: offset))
            XCTAssertFalse(done, "start \(start) offset \(offset)")
            XCTAssertEqual(after, frame)
        }
        // The last two bytes of the frame are a valid place.
        XCTAssertTrue(complete(frame, header: header(start: 34, offset: 44)).0)
    }

    func testTheSumMatchesRFC1071AtEveryLengthAndAlignment() {
        let bytes = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 151 &+ 7) }
        for start in 0..<4 {
            for count in [0, 1, 2, 3, 4, 5, 7, 8, 9, 63, 64, 65, 295] {
                let ours = bytes.withUnsafeBytes { ChecksumCompletion.onesComplementSum($0.baseAddress! + start, count: count) }
                XCTAssertEqual(ours, onesComplementSum(bytes[start..<start + count]), "start \(start) count \(count)")
            }
        }
    }
}
