import Packets
import TestSupport
import XCTest

/// A GSO frame Ferry cannot segment is refused with a typed error, before
/// anything is written, and each error counts under a drop reason of its own.
final class GSOValidationTests: XCTestCase {
    private func refusal(_ frame: GSOTestFrame, cuts: [Int] = []) -> SegmentationError? {
        do {
            let (outcome, segments) = try segmentWithFerry(frame, checksum: .complete, cuts: cuts)
            XCTFail("segmented into \(segments.count) (\(outcome))")
            return nil
        } catch {
            return error
        }
    }

    private let good = GSOTestFrame(payloadLength: 4000, segmentSize: 1448)

    func testSegmentSizeZero() {
        var frame = good
        frame.header.segmentSize = 0
        XCTAssertEqual(refusal(frame), .segmentSizeZero)
    }

    func testHeaderLengthOrHeadersPastTheFrame() {
        var frame = good
        frame.header.headerLength = UInt16(frame.bytes.count + 1)
        XCTAssertEqual(refusal(frame), .headersPastFrame)
        // A frame cut inside its TCP header, its IP length made to agree.
        var cut = good
        cut.bytes = Array(cut.bytes[..<50])
        cut.bytes[16] = 0
        cut.bytes[17] = 36
        cut.header.headerLength = 40
        cut.header.flags = 0
        XCTAssertEqual(refusal(cut), .headersPastFrame)
        // A TCP data offset that claims options past the frame's end.
        var options = GSOTestFrame(payloadLength: 0, segmentSize: 100)
        options.bytes[34 + 12] = 0xF0
        XCTAssertEqual(refusal(options), .headersPastFrame)
    }

    func testGSOOnFramesThatAreNotTCPOrUDP() {
        var icmp = good
        icmp.bytes[14 + 9] = 1
        XCTAssertEqual(refusal(icmp), .notTCPOrUDP)
        var arp = good
        arp.bytes[12] = 0x08
        arp.bytes[13] = 0x06
        XCTAssertEqual(refusal(arp), .notTCPOrUDP)
        // TCPv6 named, IPv4 carried; UDP carried under a TCP type.
        var mismatch = good
        mismatch.header.gsoType = VirtioNetHeader.gsoTCPv6
        XCTAssertEqual(refusal(mismatch), .notTCPOrUDP)
        var udp = GSOTestFrame(transport: .udp, payloadLength: 3000, segmentSize: 1000)
        udp.header.gsoType = VirtioNetHeader.gsoTCPv4
        XCTAssertEqual(refusal(udp), .notTCPOrUDP)
    }

    func testUnsupportedTypes() {
        for type: UInt8 in [VirtioNetHeader.gsoUDP, 2, 6, 0x7F, VirtioNetHeader.gsoUDPL4 | VirtioNetHeader.gsoECN] {
            var frame = GSOTestFrame(transport: .udp, payloadLength: 3000, segmentSize: 1000)
            frame.header.gsoType = type
            XCTAssertEqual(refusal(frame), .unsupportedType(type))
        }
    }

    func testChecksumStartOrOffsetPastTheFrame() {
        var start = good
        start.header.checksumStart = UInt16(start.bytes.count)
        XCTAssertEqual(refusal(start), .checksumOffsetPastFrame)
        var offset = good
        offset.header.checksumOffset = UInt16(offset.bytes.count - Int(offset.header.checksumStart) - 1)
        XCTAssertEqual(refusal(offset), .checksumOffsetPastFrame)
    }

    func testMoreThan64KiBAfterTheHeaders() {
        var frame = GSOTestFrame(ipv6: true, payloadLength: 65_535 - 20, segmentSize: 1440)
        frame.bytes += [UInt8](repeating: 0, count: 21)
        XCTAssertEqual(refusal(frame), .tooLong)
    }

    func testInconsistentIPLengths() {
        var ipv4 = good
        ipv4.bytes[17] &+= 1
        XCTAssertEqual(refusal(ipv4), .inconsistentIPLength)
        var ipv6 = GSOTestFrame(ipv6: true, payloadLength: 4000, segmentSize: 1440)
        ipv6.bytes[19] &-= 1
        XCTAssertEqual(refusal(ipv6), .inconsistentIPLength)
        var headerLength = good
        headerLength.bytes[14] = 0x44
        XCTAssertEqual(refusal(headerLength), .inconsistentIPLength)
        var dataOffset = good
        dataOffset.bytes[34 + 12] = 0x40
        XCTAssertEqual(refusal(dataOffset), .inconsistentIPLength)
    }

    func testHeadersHeldInManySmallRangesStillParse() throws {
        let segments = try segmentWithFerry(good, checksum: .complete, cuts: Array(stride(from: 1, to: 80, by: 3))).1
        XCTAssertEqual(segments.count, 3)
    }

    func testEveryErrorHasADropReasonOfItsOwn() {
        let errors: [SegmentationError] = [.segmentSizeZero, .headersPastFrame, .unsupportedType(3), .notTCPOrUDP,
                                           .checksumOffsetPastFrame, .tooLong, .inconsistentIPLength]
        XCTAssertEqual(Set(errors.map(\.dropReason)).count, errors.count)
        XCTAssertEqual(errors.map(\.dropReason.name),
                       ["gso_size_zero", "gso_headers_past_frame", "gso_unsupported_type", "gso_not_tcp_udp",
                        "bad_checksum_offset", "gso_too_long", "gso_ip_length_mismatch"])
    }
}
