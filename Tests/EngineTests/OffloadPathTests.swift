import Packets
import Ports
import TestSupport
import Virtio
import XCTest

@testable import Engine

/// Frames that ask a destination for more than it negotiated are adapted on
/// the way: TSO super-frames segmented for a guest without GUEST_TSO (tags
/// pushed first), partial checksums finished for one without GUEST_CSUM; a
/// GSO frame that cannot be segmented is dropped where it came in, with its reason.
final class OffloadPathTests: XCTestCase {
    let log = CapturedLog()
    let noTSO = VirtioNetFeatures.guestTSO4.rawValue | VirtioNetFeatures.guestTSO6.rawValue

    private func header(_ h: VirtioNetHeader) -> [UInt8] {
        var raw = [UInt8](repeating: 0, count: 12)
        raw.withUnsafeMutableBytes { h.store(to: $0.baseAddress!) }
        return raw
    }

    func testASuperFrameIsSegmentedForAGuestWithoutTSOAndPassedToOneWithIt() throws {
        let sender = try TestGuest("o-a", log: log)
        let withTSO = try TestGuest("o-b", log: log)
        let withoutTSO = try TestGuest("o-c", log: log, withoutFeatures: noTSO)
        let plain = try TestGuest("o-d", log: log, withoutFeatures: noTSO | VirtioNetFeatures.guestCsum.rawValue)
        let sw = try SwitchHarness([(.vhost(sender.port), .access(7)), (.vhost(withTSO.port), .access(7)),
                                    (.vhost(withoutTSO.port), .trunk([7])), (.vhost(plain.port), .access(7))])
        for guest in [withTSO, withoutTSO, plain] { guest.postBuffers(16, size: 4096) }
        let gso = GSOTestFrame(payloadLength: 10_000, segmentSize: 1448, tcpFlags: 0x19)
        sender.send(gso.bytes, header: header(gso.header), split: [12 + 30, 3000, 1, 12 + gso.bytes.count - 3043])
        sw.pass()

        let whole = withTSO.received()
        XCTAssertEqual(whole.map(\.frame), [gso.bytes])
        XCTAssertEqual(whole.first.map { Array($0.header[..<10]) }, Array(header(gso.header)[..<10]))
        XCTAssertEqual(withTSO.counters.offloads[.gsoPassed], 1)

        // The trunk gets the segments of the tagged frame, checksums left partial (it took GUEST_CSUM).
        let tagged = GSOTestFrame(payloadLength: 10_000, segmentSize: 1448, tcpFlags: 0x19, vlan: 7)
        let expected = try segmentWithFerry(tagged, checksum: .partial).1
        let segments = withoutTSO.received()
        XCTAssertEqual(segments.map(\.frame), expected.map(\.1))
        XCTAssertEqual(segments.map { Array($0.header[..<10]) }, expected.map { Array(header($0.0)[..<10]) })
        XCTAssertEqual(withoutTSO.counters.offloads[.segmentedFrames], 1)
        XCTAssertEqual(withoutTSO.counters.offloads[.segmentsOut], 7)
        XCTAssertEqual(withoutTSO.counters.txPackets, 7)

        // Without GUEST_CSUM every checksum is computed.
        let complete = plain.received()
        XCTAssertEqual(complete.map(\.frame), try segmentWithFerry(gso, checksum: .complete).1.map(\.1))
        for segment in complete {
            XCTAssertNil(checksumProblem(in: segment.frame))
            XCTAssertEqual(segment.header[0], 0, "no NEEDS_CSUM")
        }
    }

    /// Segments go straight into the receiving guest's chains, whatever shape
    /// they have: with MRG_RXBUF in buffers smaller than a segment (each
    /// segment spans chains, num_buffers says how many), and without it in a
    /// big-buffer guest's chains of several descriptors. The bytes are the
    /// segmenter's own (`segmentWithFerry`, checked against the kernel).
    func testSegmentsGoStraightIntoMergeableAndBigBufferChains() throws {
        try segmentsGoStraightIntoMergeableAndBigBufferChains(packed: false)
    }

    /// The same into guests on packed rings (`PackedReceiveChainSink`).
    func testSegmentsGoStraightIntoPackedMergeableAndBigBufferChains() throws {
        try segmentsGoStraightIntoMergeableAndBigBufferChains(packed: true)
    }

    /// A TSO sender and two receivers without TSO in VLAN 3, on `packed` rings: the first
    /// with MRG_RXBUF, the second without (a big-buffer guest). Guest names start with `tag`.
    private func senderAndTwoReceivers(_ tag: String, packed: Bool) throws
        -> (sender: TestGuest, mergeable: TestGuest, bigBuffers: TestGuest, sw: SwitchHarness)
    {
        let sender = try TestGuest("\(tag)-a", log: log)
        let mergeable = try TestGuest("\(tag)-b", log: log, withoutFeatures: noTSO, packed: packed)
        let bigBuffers = try TestGuest("\(tag)-c", log: log,
                                       withoutFeatures: noTSO | VirtioNetFeatures.mergeableRxBuffers.rawValue,
                                       packed: packed)
        let sw = try SwitchHarness([(.vhost(sender.port), .access(3)), (.vhost(mergeable.port), .access(3)),
                                    (.vhost(bigBuffers.port), .access(3))])
        return (sender, mergeable, bigBuffers, sw)
    }

    private func segmentsGoStraightIntoMergeableAndBigBufferChains(packed: Bool) throws {
        let (sender, small, big, sw) = try senderAndTwoReceivers("m", packed: packed)
        XCTAssertEqual(small.device.packedRings, packed)
        small.postBuffers(40, size: 500)
        for _ in 0..<8 { big.frontEnd.receiveRing.offerRX(bufferSizes: [12, 100, 1000, 4096]) }
        let gso = GSOTestFrame(ipv6: true, payloadLength: 7000, segmentSize: 1440, tcpFlags: 0x19)
        sender.send(gso.bytes, header: header(gso.header), split: [12 + 14, 700, 5000, gso.bytes.count - 14 - 5700])
        sw.pass()

        let expected = try segmentWithFerry(gso, checksum: .partial).1
        for guest in [small, big] {
            let got = guest.received()
            XCTAssertEqual(got.map(\.frame), expected.map(\.1))
            XCTAssertEqual(got.map { Array($0.header[..<10]) }, expected.map { Array(header($0.0)[..<10]) })
            XCTAssertEqual(got.map(\.numBuffers), guest === small ? [4, 4, 4, 4, 3] : [1, 1, 1, 1, 1])
            XCTAssertEqual(guest.counters.offloads[.segmentedFrames], 1)
            XCTAssertEqual(guest.counters.offloads[.segmentsOut], 5)
            XCTAssertEqual(guest.counters.txPackets, 5)
            XCTAssertEqual(guest.counters.txBytes, UInt64(expected.reduce(0) { $0 + $1.1.count }))
            XCTAssertEqual(guest.counters.drops, [:])
        }
        // 12 + 74 + 1440 bytes in 500-byte buffers: four each, the last segment (1240 bytes of payload) three.
        XCTAssertEqual(small.postedBuffers, 40 - 4 * 4 - 3)
        XCTAssertEqual(big.postedBuffers, 8 - 5)
    }

    /// The guest's ring runs out in the middle of a frame: the segments that
    /// found a chain are delivered, every other one is a counted drop, as is
    /// every segment of the next frame; a chain too small for a segment
    /// (no MRG_RXBUF) takes none of them.
    func testARingThatRunsOutMidFrameCountsEveryMissingSegment() throws {
        try aRingThatRunsOutMidFrameCountsEveryMissingSegment(packed: false)
    }

    func testAPackedRingThatRunsOutMidFrameCountsEveryMissingSegment() throws {
        try aRingThatRunsOutMidFrameCountsEveryMissingSegment(packed: true)
    }

    private func aRingThatRunsOutMidFrameCountsEveryMissingSegment(packed: Bool) throws {
        let (sender, short, tiny, sw) = try senderAndTwoReceivers("r", packed: packed)
        short.postBuffers(3, size: 2048)
        tiny.postBuffers(4, size: 1000)
        let gso = GSOTestFrame(payloadLength: 10_000, segmentSize: 1448)
        sender.send(gso.bytes, header: header(gso.header))
        sender.send(gso.bytes, header: header(gso.header))
        sw.pass()

        let expected = try segmentWithFerry(gso, checksum: .partial).1
        XCTAssertEqual(short.received().map(\.frame), expected[..<3].map(\.1))
        XCTAssertEqual(short.counters.offloads[.segmentedFrames], 2)
        XCTAssertEqual(short.counters.offloads[.segmentsOut], 3)
        XCTAssertEqual(short.counters.txPackets, 3)
        XCTAssertEqual(short.counters.drops, [.noRxBuffer: 4 + 7])

        XCTAssertEqual(tiny.received().count, 0)
        XCTAssertEqual(tiny.counters.offloads[.segmentsOut] ?? 0, 0)
        XCTAssertEqual(tiny.counters.drops, [.rxBufferTooSmall: 7 + 7])
        XCTAssertEqual(tiny.postedBuffers, 4, "the chains stay the guest's")

        // New buffers: the next frame goes whole.
        short.postBuffers(7, size: 2048)
        sender.send(gso.bytes, header: header(gso.header))
        sw.pass()
        XCTAssertEqual(short.received().map(\.frame), expected.map(\.1))
    }

    func testAPartialChecksumIsFinishedForAGuestWithoutGuestCsum() throws {
        let sender = try TestGuest("c-a", log: log)
        let plain = try TestGuest("c-b", log: log, withoutFeatures: VirtioNetFeatures.guestCsum.rawValue)
        let sw = try SwitchHarness([(.vhost(sender.port), .access(1)), (.vhost(plain.port), .access(1))])
        plain.postBuffers(4)
        let partial = udpFrame(sourcePort: 7, size: 301, partialChecksum: true)
        sender.send(partial, header: [1, 0, 0, 0, 0, 0, 34, 0, 6, 0, 0, 0])
        sw.pass()
        let got = plain.received()
        XCTAssertEqual(got.count, 1)
        XCTAssertEqual(got.first.map { udpChecksum(of: $0.frame) }, 0)
        XCTAssertEqual(got.first?.header[0], 0)
        XCTAssertEqual(plain.counters.offloads[.checksumsCompleted], 1)
    }

    func testAGSOFrameThatCannotBeSegmentedIsDroppedWhereItCameIn() throws {
        let sender = try TestGuest("h-a", log: log)
        let receiver = try TestGuest("h-b", log: log)
        let sw = try SwitchHarness([(.vhost(sender.port), .access(1)), (.vhost(receiver.port), .access(1))])
        receiver.postBuffers(8, size: 4096)
        var zero = GSOTestFrame(payloadLength: 3000, segmentSize: 1448)
        zero.header.segmentSize = 0
        var lying = GSOTestFrame(payloadLength: 3000, segmentSize: 1448)
        lying.bytes[17] &+= 4
        var notTCP = GSOTestFrame(transport: .udp, payloadLength: 3000, segmentSize: 1000)
        notTCP.header.gsoType = VirtioNetHeader.gsoTCPv4
        for bad in [zero, lying, notTCP] { sender.send(bad.bytes, header: header(bad.header)) }
        sw.pass()
        XCTAssertEqual(receiver.received().count, 0)
        XCTAssertEqual(sender.counters.drops, [.gsoSizeZero: 1, .gsoIPLengthMismatch: 1, .gsoNotTCPOrUDP: 1])
        // The port goes on.
        let good = GSOTestFrame(payloadLength: 3000, segmentSize: 1448)
        sender.send(good.bytes, header: header(good.header))
        sw.pass()
        XCTAssertEqual(receiver.received().map(\.frame), [good.bytes])
    }
}
