import Packets
import TestSupport
import XCTest

/// Ferry's segments byte for byte against the kernel's own (skb_gso_segment,
/// reached through a Linux bridge to a TAP whose reader took no TSO/USO), with
/// checksums computed and with checksums left partial. Needs root; fails with
/// the reason otherwise.
final class SegmentationKernelReferenceTests: XCTestCase {
    private let frames: [(String, GSOTestFrame)] = [
        ("TCPv4", GSOTestFrame(payloadLength: 10_000, segmentSize: 1448, tcpFlags: 0x19)),
        ("TCPv4 options ECN", GSOTestFrame(payloadLength: 7_777, segmentSize: 1400, ipOptions: [0x94, 0x04, 0, 0],
                                           tcpOptions: [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
                                           tcpFlags: 0x80 | 0x18, ecn: true)),
        ("TCPv4 64 KiB", GSOTestFrame(payloadLength: 65_535 - 40, segmentSize: 1448)),
        ("TCPv6", GSOTestFrame(ipv6: true, payloadLength: 20_000, segmentSize: 1440, tcpFlags: 0x18)),
        ("TCPv4 tagged", GSOTestFrame(payloadLength: 5000, segmentSize: 1000, vlan: 10)),
        ("TCPv6 tagged", GSOTestFrame(ipv6: true, payloadLength: 3001, segmentSize: 1000, vlan: 100)),
        ("UDPv4", GSOTestFrame(transport: .udp, payloadLength: 6000, segmentSize: 1472)),
        ("UDPv6", GSOTestFrame(transport: .udp, ipv6: true, payloadLength: 4001, segmentSize: 1000)),
    ]

    private func compare(checksum: SoftwareSegmenter.Checksum) throws {
        let kernel = try KernelSegmentation(checksumOffload: checksum == .partial)
        for (name, frame) in frames {
            let (outcome, ours) = try segmentWithFerry(frame, checksum: checksum)
            let theirs = try kernel.segments(of: frame, expecting: outcome.segmentCount)
            XCTAssertEqual(ours.count, theirs.count, name)
            for (i, (mine, reference)) in zip(ours, theirs).enumerated() {
                XCTAssertEqual(mine.1.count, reference.1.count, "\(name) segment \(i) length")
                if let at = (0..<min(mine.1.count, reference.1.count)).first(where: { mine.1[$0] != reference.1[$0] }) {
                    XCTFail("\(name) segment \(i): byte \(at) is \(mine.1[at]), the kernel's \(reference.1[at]); "
                            + "headers \(mine.1.prefix(80)) vs \(reference.1.prefix(80))")
                }
                XCTAssertEqual(mine.0.flags & VirtioNetHeader.needsChecksum,
                               reference.0.flags & VirtioNetHeader.needsChecksum, "\(name) segment \(i)")
                if checksum == .partial {
                    XCTAssertEqual(mine.0.checksumStart, reference.0.checksumStart, "\(name) segment \(i)")
                    XCTAssertEqual(mine.0.checksumOffset, reference.0.checksumOffset, "\(name) segment \(i)")
                } else {
                    XCTAssertNil(checksumProblem(in: reference.1), "\(name) kernel segment \(i)")
                }
            }
        }
    }

    func testCompleteChecksumsMatchTheKernel() throws { try compare(checksum: .complete) }

    func testPartialChecksumsMatchTheKernel() throws { try compare(checksum: .partial) }
}
