import Packets
import TestSupport
import XCTest

/// Software segmentation: every segment carries the right lengths, IDs,
/// sequence numbers and flags, every checksum verifies with a separate
/// routine, and the payload comes through whole, whatever ranges hold the frame.
final class SoftwareSegmenterTests: XCTestCase {
    private func payload(of segment: [UInt8], headerLength: Int) -> ArraySlice<UInt8> { segment[headerLength...] }

    private func checkTCP(_ frame: GSOTestFrame, network: Int, transport: Int, ipv6: Bool, cuts: [Int] = [],
                          file: StaticString = #filePath, line: UInt = #line) throws {
        let (outcome, segments) = try segmentWithFerry(frame, checksum: .complete, cuts: cuts)
        let mss = Int(frame.header.segmentSize)
        let headerLength = transport + Int(frame.bytes[transport + 12] >> 4) * 4
        let total = frame.bytes.count - headerLength
        XCTAssertTrue(outcome.isComplete, file: file, line: line)
        XCTAssertEqual(segments.count, (total + mss - 1) / mss, file: file, line: line)
        var joined: [UInt8] = []
        let firstSequence = UInt32(frame.bytes[transport + 4]) << 24 | UInt32(frame.bytes[transport + 5]) << 16
            | UInt32(frame.bytes[transport + 6]) << 8 | UInt32(frame.bytes[transport + 7])
        let flags = frame.bytes[transport + 13]
        for (i, (header, bytes)) in segments.enumerated() {
            XCTAssertNil(checksumProblem(in: bytes), "segment \(i)", file: file, line: line)
            XCTAssertEqual(header, VirtioNetHeader(), file: file, line: line)
            XCTAssertEqual(Array(bytes[..<network]), Array(frame.bytes[..<network]), file: file, line: line)
            let ipLength = Int(bytes[network + (ipv6 ? 4 : 2)]) << 8 | Int(bytes[network + (ipv6 ? 5 : 3)])
            XCTAssertEqual(ipLength, bytes.count - network - (ipv6 ? 40 : 0), file: file, line: line)
            if !ipv6 {
                let id = UInt16(bytes[network + 4]) << 8 | UInt16(bytes[network + 5])
                let firstID = UInt16(frame.bytes[network + 4]) << 8 | UInt16(frame.bytes[network + 5])
                XCTAssertEqual(id, firstID &+ UInt16(i), file: file, line: line)
            }
            let sequence = UInt32(bytes[transport + 4]) << 24 | UInt32(bytes[transport + 5]) << 16
                | UInt32(bytes[transport + 6]) << 8 | UInt32(bytes[transport + 7])
            XCTAssertEqual(sequence, firstSequence &+ UInt32(i * mss), file: file, line: line)
            var expectedFlags = flags
            if i < segments.count - 1 { expectedFlags &= ~0x09 }
            if i > 0 { expectedFlags &= ~0x80 }
            XCTAssertEqual(bytes[transport + 13], expectedFlags, "segment \(i) flags", file: file, line: line)
            // Options (IPv4 and TCP) come along unchanged.
            XCTAssertEqual(Array(bytes[(transport + 20)..<headerLength]),
                           Array(frame.bytes[(transport + 20)..<headerLength]), file: file, line: line)
            joined += payload(of: bytes, headerLength: headerLength)
        }
        XCTAssertEqual(joined, Array(frame.bytes[headerLength...]), file: file, line: line)
    }

    func testTCPOverIPv4WithOptionsCarriesSequenceIDsAndFlags() throws {
        let frame = GSOTestFrame(payloadLength: 10_000, segmentSize: 1448, ipOptions: [0x94, 0x04, 0, 0],
                                 tcpOptions: [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], tcpFlags: 0x80 | 0x18 | 0x01,
                                 ecn: true)
        try checkTCP(frame, network: 14, transport: 38, ipv6: false)
    }

    func testTCPOverIPv6AndTaggedFrames() throws {
        try checkTCP(GSOTestFrame(ipv6: true, payloadLength: 9000, segmentSize: 1440), network: 14, transport: 54,
                     ipv6: true)
        try checkTCP(GSOTestFrame(payloadLength: 5000, segmentSize: 1000, vlan: 10), network: 18, transport: 38,
                     ipv6: false)
        try checkTCP(GSOTestFrame(ipv6: true, payloadLength: 3001, segmentSize: 1000, vlan: 4094), network: 18,
                     transport: 58, ipv6: true)
    }

    func testLargestFrameAndOddRangesGiveTheSameSegments() throws {
        let frame = GSOTestFrame(payloadLength: 65_535 - 40, segmentSize: 1448)
        try checkTCP(frame, network: 14, transport: 34, ipv6: false)
        // Ranges cut inside the headers and at odd offsets in the payload.
        let whole = try segmentWithFerry(frame, checksum: .complete).1.map { $0.1 }
        let cut = try segmentWithFerry(frame, checksum: .complete, cuts: [7, 13, 40, 55, 1001, 1002, 3333, 40_001]).1
            .map { $0.1 }
        XCTAssertEqual(cut, whole)
    }

    func testUDPSegmentationGivesDatagramsWithLengthAndChecksum() throws {
        for ipv6 in [false, true] {
            let frame = GSOTestFrame(transport: .udp, ipv6: ipv6, payloadLength: 4000, segmentSize: 1400)
            let (outcome, segments) = try segmentWithFerry(frame, checksum: .complete)
            XCTAssertEqual(outcome, SoftwareSegmenter.Outcome(written: 3, segmentCount: 3))
            let transport = ipv6 ? 54 : 34
            var joined: [UInt8] = []
            for (_, bytes) in segments {
                XCTAssertNil(checksumProblem(in: bytes))
                XCTAssertEqual(Int(bytes[transport + 4]) << 8 | Int(bytes[transport + 5]), bytes.count - transport)
                joined += bytes[(transport + 8)...]
            }
            XCTAssertEqual(segments.map { $0.1.count - transport - 8 }, [1400, 1400, 1200])
            XCTAssertEqual(joined, Array(frame.bytes[(transport + 8)...]))
        }
    }

    /// A partial checksum finished by the destination (here ChecksumCompletion,
    /// as a TAP's kernel would) gives exactly the completely computed segment.
    func testPartialChecksumsCompleteToTheSameBytes() throws {
        for frame in [GSOTestFrame(payloadLength: 7000, segmentSize: 1448, vlan: 7),
                      GSOTestFrame(transport: .udp, ipv6: true, payloadLength: 2999, segmentSize: 1000)] {
            let complete = try segmentWithFerry(frame, checksum: .complete).1
            let partial = try segmentWithFerry(frame, checksum: .partial).1
            XCTAssertEqual(partial.count, complete.count)
            for ((header, bytes), (_, expected)) in zip(partial, complete) {
                XCTAssertEqual(header.flags, VirtioNetHeader.needsChecksum)
                var finished = bytes
                var raw = [UInt8](repeating: 0, count: 12)
                raw.withUnsafeMutableBytes { header.store(to: $0.baseAddress!) }
                let done = finished.withUnsafeMutableBytes { buffer in
                    raw.withUnsafeBytes {
                        ChecksumCompletion.complete(frame: buffer.baseAddress!, length: buffer.count,
                                                    header: $0.baseAddress!)
                    }
                }
                XCTAssertTrue(done)
                XCTAssertEqual(finished, expected)
            }
        }
    }

    func testAFullSinkStopsSegmentationAndSaysWhere() throws {
        let frame = GSOTestFrame(payloadLength: 10_000, segmentSize: 1000)
        let (outcome, segments) = try segmentWithFerry(frame, checksum: .complete, slots: 4)
        XCTAssertEqual(outcome, SoftwareSegmenter.Outcome(written: 4, segmentCount: 10))
        XCTAssertEqual(segments.count, 4)
        // A slot too small for one segment takes none.
        let (small, none) = try segmentWithFerry(frame, checksum: .complete, slotSize: 1000)
        XCTAssertEqual(small.written, 0)
        XCTAssertTrue(none.isEmpty)
    }

    func testPayloadNoLongerThanOneSegmentGivesOneSegment() throws {
        let frame = GSOTestFrame(payloadLength: 500, segmentSize: 1448, tcpFlags: 0x80 | 0x19)
        let segments = try segmentWithFerry(frame, checksum: .complete).1
        XCTAssertEqual(segments.count, 1)
        XCTAssertEqual(segments[0].1[34 + 13], 0x80 | 0x19)
        XCTAssertNil(checksumProblem(in: segments[0].1))
    }
}
