import Glibc
import Model
import Packets
import Platform
@testable import Ports
import TestSupport
import XCTest

/// A vxlan port on loopback addresses, with plain UDP sockets as its remote
/// VTEPs (127.0.0.2 and 127.0.0.3; 127.0.0.4 is a stranger). The port's raw
/// sending socket needs CAP_NET_RAW: these tests need root and fail with the
/// reason without it.
final class VxlanPortTests: XCTestCase {
    let vni: UInt32 = 5001
    let local = InternetAddress("127.0.0.1")!

    override func setUpWithError() throws {
        guard geteuid() == 0 else { throw NetworkSandbox.Unavailable("vxlan port tests need root: the port sends through a raw socket") }
    }

    private func port(remotes: [String] = ["127.0.0.2", "127.0.0.3"]) throws -> VxlanPort {
        try VxlanPort(vni: vni, local: local, remotes: remotes.map { InternetAddress($0)! }, udpPort: UDPPeer.testPort,
                      batchCapacity: 32)
    }

    /// Pulls until `count` datagrams were taken or a second passed.
    private func pull(_ port: VxlanPort, _ batch: PacketBatch, datagrams count: Int) -> Int {
        var taken = 0
        let deadline = MonotonicClock.seconds() + 1
        while taken < count && MonotonicClock.seconds() <= deadline {
            taken += port.pull(queue: 0, into: batch)
        }
        return taken
    }

    func testAGoodDatagramBecomesAFrameMarkedWithItsVTEP() throws {
        let port = try port()
        let peer = try UDPPeer("127.0.0.3")
        let inner = udpFrame(sourcePort: 7, size: 100)
        peer.send(vxlanHeader(vni: vni) + inner, to: local)
        let batch = PacketBatch(capacity: 32)
        XCTAssertEqual(pull(port, batch, datagrams: 1), 1)
        XCTAssertEqual(batch.count, 1)
        XCTAssertEqual(batch.tunnelEndpoint(of: 0), 2, "127.0.0.3 is the second remote")
        XCTAssertEqual(batch.length(of: 0), inner.count)
        let bytes = [UInt8](UnsafeRawBufferPointer(start: batch.segmentBase(batch.segments(of: 0).lowerBound),
                                                   count: inner.count))
        XCTAssertEqual(bytes, inner)
        XCTAssertEqual(port.counters[0].snapshot.rxPackets, 1)
        XCTAssertEqual(port.endpoints.counters(2).rxPackets, 1)
        XCTAssertEqual(port.endpoints.counters(2).rxBytes, UInt64(inner.count))
    }

    func testEveryKindOfBadDatagramIsCountedUnderItsOwnReasonAndNeverForwarded() throws {
        let port = try port()
        let peer = try UDPPeer("127.0.0.2")
        let stranger = try UDPPeer("127.0.0.4")
        let inner = udpFrame(sourcePort: 7, size: 64)
        peer.send(vxlanHeader(vni: vni, validFlag: false) + inner, to: local)
        peer.send(vxlanHeader(vni: vni) + inner.prefix(13), to: local)
        peer.send(Array(vxlanHeader(vni: vni).prefix(5)), to: local)
        peer.send(vxlanHeader(vni: vni + 1) + inner, to: local)
        stranger.send(vxlanHeader(vni: vni) + inner, to: local)
        let batch = PacketBatch(capacity: 32)
        XCTAssertEqual(pull(port, batch, datagrams: 5), 5)
        XCTAssertEqual(batch.count, 0, "nothing bad becomes a frame")
        let snapshot = port.counters[0].snapshot
        XCTAssertEqual(snapshot.drops, [.vxlanFlagClear: 1, .vxlanTruncated: 2, .vxlanUnknownVNI: 1,
                                        .vxlanUnknownVTEP: 1])
        XCTAssertEqual(snapshot.rxPackets, 0)
        XCTAssertEqual(port.endpoints.count, 2, "a stranger is not taken as a VTEP when remote= is given")
    }

    func testWithoutRemotesASenderIsNumberedWhenFirstHeard() throws {
        let port = try port(remotes: [])
        let first = try UDPPeer("127.0.0.4")
        let second = try UDPPeer("127.0.0.5")
        let inner = udpFrame(sourcePort: 7, size: 64)
        first.send(vxlanHeader(vni: vni) + inner, to: local)
        second.send(vxlanHeader(vni: vni) + inner, to: local)
        first.send(vxlanHeader(vni: vni) + inner, to: local)
        let batch = PacketBatch(capacity: 32)
        XCTAssertEqual(pull(port, batch, datagrams: 3), 3)
        XCTAssertEqual((0..<batch.count).map { batch.tunnelEndpoint(of: $0) }, [1, 2, 1])
        XCTAssertEqual(port.endpoints.address(2), InternetAddress("127.0.0.5"))
        XCTAssertEqual(port.endpoints.floodCount, 0)
    }

    func testAFloodGoesToEveryRemoteAndAKnownDestinationToItsVTEPAlone() throws {
        let port = try port()
        let second = try UDPPeer("127.0.0.2")
        let third = try UDPPeer("127.0.0.3")
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 32)
        let flooded = udpFrame(sourcePort: 1, size: 80)
        let unicast = udpFrame(sourcePort: 2, size: 90)
        arena.append(flooded, cuts: [5], to: batch)
        batch.setTunnelEndpoint(0, 0)
        arena.append(unicast, cuts: [], to: batch)
        batch.setTunnelEndpoint(1, 2)
        port.push(queue: 0, from: batch)

        let atSecond = second.receiveAll()
        let atThird = third.receiveAll()
        XCTAssertEqual(atSecond, [vxlanHeader(vni: vni) + flooded])
        XCTAssertEqual(atThird, [vxlanHeader(vni: vni) + flooded, vxlanHeader(vni: vni) + unicast])
        XCTAssertEqual(port.counters[0].snapshot.txPackets, 3, "counted per datagram")
        XCTAssertEqual(port.endpoints.counters(1).txPackets, 1)
        XCTAssertEqual(port.endpoints.counters(2).txPackets, 2)
        XCTAssertEqual(port.endpoints.counters(2).txBytes, UInt64(flooded.count + unicast.count))
    }

    /// The flood list can change under a running port (EVPN's type-3 routes): a VTEP taken
    /// out of it gets no flood, but still what the table places behind it; one put back gets
    /// floods again, and one appended later (as EVPN adds VTEPs) is flooded once in the list.
    func testAFloodGoesOnlyToTheVTEPsInTheFloodListNow() throws {
        let port = try port()
        let second = try UDPPeer("127.0.0.2")
        let third = try UDPPeer("127.0.0.3")
        let fourth = try UDPPeer("127.0.0.4")
        let arena = FrameArena()
        let flooded = udpFrame(sourcePort: 1, size: 80)
        let unicast = udpFrame(sourcePort: 2, size: 90)
        func push(_ frames: [([UInt8], UInt16)]) {
            let batch = PacketBatch(capacity: 32)
            for (i, (frame, endpoint)) in frames.enumerated() {
                arena.append(frame, cuts: [], to: batch)
                batch.setTunnelEndpoint(i, endpoint)
            }
            port.push(queue: 0, from: batch)
        }
        port.endpoints.setFlooding(1, false)
        XCTAssertEqual(port.endpoints.floodCount, 1)
        push([(flooded, 0), (unicast, 1)])
        XCTAssertEqual(second.receiveAll(), [vxlanHeader(vni: vni) + unicast])
        XCTAssertEqual(third.receiveAll(), [vxlanHeader(vni: vni) + flooded])

        let added = Int(port.endpoints.append(InternetAddress("127.0.0.4")!))
        XCTAssertEqual(added, 3)
        push([(flooded, 0)])
        XCTAssertEqual(fourth.receiveAll(), [], "known, but not in the flood list")
        XCTAssertEqual(third.receiveAll(), [vxlanHeader(vni: vni) + flooded])
        port.endpoints.setFlooding(added, true)
        port.endpoints.setFlooding(1, true)
        port.endpoints.setFlooding(1, true)
        XCTAssertEqual(port.endpoints.floodCount, 3)
        push([(flooded, 0)])
        XCTAssertEqual(second.receiveAll(), [vxlanHeader(vni: vni) + flooded])
        XCTAssertEqual(third.receiveAll(), [vxlanHeader(vni: vni) + flooded])
        XCTAssertEqual(fourth.receiveAll(), [vxlanHeader(vni: vni) + flooded])
        port.endpoints.setFlooding(1, false)
        port.endpoints.setFlooding(2, false)
        port.endpoints.setFlooding(added, false)
        push([(flooded, 0)])
        XCTAssertEqual(port.counters[0].snapshot.drops[.noDestination], 1, "an empty flood list")
    }

    func testTheSourcePortFollowsTheInnerFlowAndStaysInTheDynamicRange() throws {
        let port = try port(remotes: ["127.0.0.2"])
        let peer = try UDPPeer("127.0.0.2")
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 32)
        for flow in [1, 2, 3, 1] as [UInt16] { arena.append(udpFrame(sourcePort: flow, size: 64), cuts: [], to: batch) }
        port.push(queue: 0, from: batch)
        var ports: [UInt16] = []
        while let d = peer.receive() { ports.append(d.sourcePort) }
        XCTAssertEqual(ports.count, 4)
        XCTAssertTrue(ports.allSatisfy { $0 >= 49_152 }, "\(ports)")
        XCTAssertEqual(ports[0], ports[3], "one flow, one source port")
        XCTAssertGreaterThan(Set(ports).count, 1, "three flows on one port: \(ports)")
    }

    /// Frames of one flow to one VTEP, of one length but the last, go as one
    /// segmented send (UDP GSO) through the flow's own socket: the VTEP gets
    /// each as its own datagram, in order, all from one source port.
    func testARunOfOneFlowLeavesAsOneSegmentedSendAndArrivesAsDatagrams() throws {
        let port = try port(remotes: ["127.0.0.2"])
        let peer = try UDPPeer("127.0.0.2")
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 32)
        var frames = (0..<5).map { i -> [UInt8] in
            var frame = udpFrame(sourcePort: 9, size: 64)
            frame[frame.count - 1] = UInt8(i)
            return frame
        }
        frames.append(udpFrame(sourcePort: 9, size: 60))
        for frame in frames { arena.append(frame, cuts: [7], to: batch) }
        port.push(queue: 0, from: batch)
        var received: [(payload: [UInt8], sourcePort: UInt16)] = []
        while let d = peer.receive() { received.append(d) }
        XCTAssertEqual(received.map(\.payload), frames.map { vxlanHeader(vni: vni) + $0 })
        XCTAssertEqual(Set(received.map(\.sourcePort)).count, 1, "one flow, one source port")
        XCTAssertTrue(received.allSatisfy { $0.sourcePort >= 49_152 })
        XCTAssertEqual(port.counters[0].snapshot.txPackets, 6, "counted per datagram")
        XCTAssertEqual(port.endpoints.counters(1).txPackets, 6)
        XCTAssertEqual(port.endpoints.counters(1).txBytes, UInt64(frames.map(\.count).reduce(0, +)))
    }

    /// A TCP super-frame is cut straight into the send arena, every checksum
    /// computed: the VTEP gets the segmenter's own segments, one datagram
    /// each, between the frames around it.
    func testASuperFrameIsCutStraightIntoDatagrams() throws {
        let port = try port(remotes: ["127.0.0.2"])
        let peer = try UDPPeer("127.0.0.2")
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 8)
        let plain = udpFrame(sourcePort: 3, size: 300)
        let gso = GSOTestFrame(payloadLength: 9000, segmentSize: 1400, tcpFlags: 0x19)
        arena.append(plain, cuts: [], to: batch)
        arena.append(gso.bytes, cuts: [20, 4001], to: batch)
        gso.header.store(to: batch.header(1))
        arena.append(plain, cuts: [], to: batch)

        port.push(queue: 0, from: batch, segmenter: SoftwareSegmenter())

        let segments = try segmentWithFerry(gso, checksum: .complete).1.map(\.1)
        XCTAssertEqual(segments.count, 7)
        let expected = [plain] + segments + [plain]
        XCTAssertEqual(peer.receiveAll(), expected.map { vxlanHeader(vni: vni) + $0 })
        let snapshot = port.counters[0].snapshot
        XCTAssertEqual(snapshot.txPackets, UInt64(expected.count))
        XCTAssertEqual(snapshot.offloads[.segmentedFrames], 1)
        XCTAssertEqual(snapshot.offloads[.segmentsOut], UInt64(segments.count))
        XCTAssertEqual(snapshot.drops, [:])
    }

    func testAFrameLongerThanTheUnderlayCarriesIsDroppedAsTooLong() throws {
        let port = try port(remotes: ["127.0.0.2"])
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 32)
        arena.append(udpFrame(sourcePort: 1, size: port.maxInnerFrameLength + 1), cuts: [], to: batch)
        arena.append(udpFrame(sourcePort: 1, size: port.maxInnerFrameLength), cuts: [], to: batch)
        let peer = try UDPPeer("127.0.0.2")
        port.push(queue: 0, from: batch)
        XCTAssertEqual(port.counters[0].snapshot.drops, [.tooLong: 1])
        XCTAssertEqual(peer.receiveAll().map(\.count), [port.maxInnerFrameLength + VXLAN.headerSize])
    }

    func testTheOuterUDPChecksumIsZeroOverIPv4() throws {
        let port = try port(remotes: ["127.0.0.2"])
        let peer = try UDPPeer("127.0.0.2")
        // A raw socket sees the UDP header the port wrote.
        let raw = UDPPeer.rawIPv4UDPSocket()
        XCTAssertGreaterThanOrEqual(raw, 0)
        defer { close(raw) }
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(raw, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 32)
        arena.append(udpFrame(sourcePort: 1, size: 64), cuts: [], to: batch)
        port.push(queue: 0, from: batch)
        XCTAssertEqual(peer.receiveAll().count, 1)
        var seen: [UInt8]?
        var buffer = [UInt8](repeating: 0, count: 2048)
        while true {
            let n = recv(raw, &buffer, buffer.count, 0)
            if n <= 0 { break }
            let ihl = Int(buffer[0] & 0x0F) * 4
            let destinationPort = UInt16(buffer[ihl + 2]) << 8 | UInt16(buffer[ihl + 3])
            if destinationPort == UDPPeer.testPort && buffer[12...15] == [127, 0, 0, 1] {
                seen = Array(buffer[ihl..<(ihl + 16)])
                break
            }
        }
        let udp = try XCTUnwrap(seen, "the raw socket saw no datagram of the port")
        XCTAssertEqual(udp[6...7], [0, 0], "checksum")
        XCTAssertEqual(Int(udp[4]) << 8 | Int(udp[5]), 8 + 8 + 64, "UDP length")
        XCTAssertEqual(udp[8...15], vxlanHeader(vni: vni)[0...7])
    }

    func testIPv6UnderlayCarriesFramesBothWays() throws {
        let local6 = InternetAddress("::1")!
        let port = try VxlanPort(vni: vni, local: local6, remotes: [local6], udpPort: UDPPeer.testPort &+ 1,
                                 batchCapacity: 32)
        // The remote is the local address itself: what the port sends comes back to it.
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 32)
        let inner = udpFrame(sourcePort: 3, size: 200)
        arena.append(inner, cuts: [], to: batch)
        port.push(queue: 0, from: batch)
        XCTAssertEqual(port.counters[0].snapshot.txPackets, 1)
        let received = PacketBatch(capacity: 32)
        XCTAssertEqual(pull(port, received, datagrams: 1), 1)
        XCTAssertEqual(received.count, 1, "the kernel's UDP checksum over IPv6 was right")
        XCTAssertEqual(received.length(of: 0), inner.count)
        XCTAssertEqual(port.maxInnerFrameLength, VxlanPort.sendSlotSize - 16, "the loopback's MTU is more than a buffer holds")
    }
}
