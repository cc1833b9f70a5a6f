import Telemetry
import XCTest

final class PcapFormatTests: XCTestCase {
    /// draft-ietf-opsawg-pcap §4, little-endian: magic, version 2.4, two reserved
    /// words, snap length, LINKTYPE_ETHERNET.
    func testFileHeaderIsByteExact() {
        XCTAssertEqual(PcapFormat.fileHeader(snapLength: 65535), [
            0xD4, 0xC3, 0xB2, 0xA1, 0x02, 0x00, 0x04, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0xFF, 0xFF, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        ])
        XCTAssertEqual(Array(PcapFormat.fileHeader(snapLength: 96)[16..<20]), [96, 0, 0, 0])
    }

    /// §5: seconds, microseconds, captured length, original length, then the bytes.
    func testRecordIsByteExactAndCutToTheSnapLength() {
        let frame: [UInt8] = Array(0..<20)
        var out: [UInt8] = []
        PcapFormat.appendRecord(microseconds: 1_700_000_000_123_456, originalLength: 20, frame: frame, snapLength: 8,
                                to: &out)
        XCTAssertEqual(out, [
            0x00, 0xF1, 0x53, 0x65,  // 1_700_000_000 s
            0x40, 0xE2, 0x01, 0x00,  // 123_456 µs
            0x08, 0x00, 0x00, 0x00,  // captured 8
            0x14, 0x00, 0x00, 0x00,  // original 20
        ] + Array(0..<8))
    }

    /// A frame the worker already cut keeps its original length.
    func testRecordOfAnAlreadyCutFrameKeepsTheOriginalLength() {
        var out: [UInt8] = []
        PcapFormat.appendRecord(microseconds: 0, originalLength: 1514, frame: [UInt8](repeating: 7, count: 4),
                                snapLength: 65535, to: &out)
        XCTAssertEqual(Array(out[8..<16]), [4, 0, 0, 0, 0xEA, 0x05, 0, 0])
        XCTAssertEqual(out.count, 16 + 4)
    }
}
