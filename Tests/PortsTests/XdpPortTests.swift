import Foundation
import Glibc
import Model
import Packets
import Platform
import Ports
import Logging
import TestSupport
import XCTest
import XDP

/// AF_XDP ports on real veth pairs (native XDP, copy mode: veth has no
/// zero-copy), with the real steering program. A packet socket on the peer
/// stands for the wire. They need root.
final class XdpPortTests: XCTestCase {
    override func setUpWithError() throws {
        try NetworkSandbox.requireTapSupport()
    }

    private func makePort(_ name: String, queues: Int? = nil, zeroCopy: XdpPort.ZeroCopyRequest = .auto,
                          attach: XDPAttachRequest = .auto) throws -> XdpPort {
        do {
            return try XdpPort(interface: name, queues: queues, attach: attach, zeroCopy: zeroCopy, guestCapacity: 64,
                               batchCapacity: 64, logger: Logger(label: "test"))
        } catch {
            throw NetworkSandbox.Unavailable("xdp port on \(name): \(error)")
        }
    }

    func testPushedFramesReachTheWireByteExactAndFramesAreRecycled() throws {
        let veth = try VethPair("xt")
        let portName = veth.name
        let port = try makePort(portName)
        XCTAssertEqual(port.queueCount, 1)
        XCTAssertEqual(port.steering.attachedMode, .native)
        XCTAssertEqual(port.copyMode, .copy, "veth cannot do zero-copy")
        XCTAssertNotNil(port.zeroCopyFallback, "auto says why it fell back")
        let socket = try veth.peerSocket()
        let arena = FrameArena()
        // More bursts than the port has transmit frames: completions must recycle them.
        let bursts = Int(XdpPort.ringSize) / 64 + 4
        var sent: [[UInt8]] = []
        for b in 0..<bursts {
            let batch = PacketBatch(capacity: 64)
            for i in 0..<64 {
                let frame = udpFrame(sourcePort: UInt16(b * 64 + i), size: [60, 64, 128, 1514][i % 4])
                arena.append(frame, cuts: i % 2 == 0 ? [] : [1 + i], to: batch)
                sent.append(frame)
            }
            port.push(queue: 0, from: batch)
            // Let the peer's socket drain so its receive buffer never overflows.
            for k in 0..<64 {
                let received = try XCTUnwrap(try socket.receive(timeout: 2), "burst \(b): frame \(k) never arrived")
                XCTAssertEqual(received, sent[b * 64 + k], "burst \(b) frame \(k)")
            }
        }
        let snapshot = port.counters[0].snapshot
        XCTAssertEqual(snapshot.txPackets, UInt64(sent.count))
        XCTAssertEqual(snapshot.drops, [:])
        XCTAssertNil(try socket.receive(timeout: 0.05), "nothing beyond what was pushed")
    }

    func testPartialChecksumsAreFinishedAndTooLongOrBadFramesAreCounted() throws {
        let veth = try VethPair("xc")
        let portName = veth.name
        let port = try makePort(portName, queues: 1, zeroCopy: .off)
        XCTAssertNil(port.zeroCopyFallback, "zerocopy=off asks for nothing to fall back from")
        XCTAssertEqual(port.maxFrameLength, 1514, "MTU 1500 + Ethernet header (a tagged frame may be 4 bytes longer)")
        let socket = try veth.peerSocket()
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 8)
        let partial = udpFrame(sourcePort: 7, size: 300, partialChecksum: true)
        arena.append(partial, cuts: [20, 41], to: batch)
        // NEEDS_CSUM, csum_start 34 (the UDP header), csum_offset 6.
        batch.header(0).storeBytes(of: 1, as: UInt8.self)
        batch.header(0).storeBytes(of: UInt16(34).littleEndian, toByteOffset: 6, as: UInt16.self)
        batch.header(0).storeBytes(of: UInt16(6).littleEndian, toByteOffset: 8, as: UInt16.self)
        arena.append(udpFrame(sourcePort: 8, size: 1515), cuts: [], to: batch)  // untagged: 1514 at most
        let hostile = udpFrame(sourcePort: 9, size: 100, partialChecksum: true)
        arena.append(hostile, cuts: [], to: batch)
        batch.header(2).storeBytes(of: 1, as: UInt8.self)
        batch.header(2).storeBytes(of: UInt16(90).littleEndian, toByteOffset: 6, as: UInt16.self)
        batch.header(2).storeBytes(of: UInt16(9).littleEndian, toByteOffset: 8, as: UInt16.self)
        let plain = udpFrame(sourcePort: 10, size: 1514)
        arena.append(plain, cuts: [], to: batch)

        port.push(queue: 0, from: batch)

        let first = try XCTUnwrap(try socket.receive(timeout: 2))
        XCTAssertEqual(first.count, partial.count)
        XCTAssertEqual(udpChecksum(of: first), 0, "the UDP checksum was finished")
        XCTAssertEqual(Array(first[..<40]), Array(partial[..<40]), "only the checksum field changed")
        XCTAssertEqual(Array(first[42...]), Array(partial[42...]))
        XCTAssertEqual(try socket.receive(timeout: 2), plain)
        XCTAssertNil(try socket.receive(timeout: 0.05))
        let snapshot = port.counters[0].snapshot
        XCTAssertEqual(snapshot.txPackets, 2)
        XCTAssertEqual(snapshot.drops, [.tooLong: 1, .badChecksumOffset: 1])
    }

    /// GSO frames (AF_XDP takes none) are cut straight into UMEM frames, in
    /// order with the frames around them: the wire gets the segmenter's own
    /// segments (`segmentWithFerry`, checked against the kernel), every
    /// checksum computed. A frame whose segments would pass the MTU goes
    /// nowhere, each of its segments counted `too_long`.
    func testSuperFramesAreSegmentedStraightIntoUMEMFrames() throws {
        let veth = try VethPair("xg")
        let port = try makePort(veth.name, queues: 1)
        let socket = try veth.peerSocket()
        let arena = FrameArena()
        let gso = GSOTestFrame(payloadLength: 10_000, segmentSize: 1448, tcpFlags: 0x19)
        let udp = GSOTestFrame(transport: .udp, ipv6: true, payloadLength: 3000, segmentSize: 1400)
        let tooBig = GSOTestFrame(payloadLength: 5000, segmentSize: 1461)
        let plain = udpFrame(sourcePort: 1, size: 200)
        let batch = PacketBatch(capacity: 8)
        arena.append(plain, cuts: [], to: batch)
        for frame in [gso, tooBig, udp] {
            arena.append(frame.bytes, cuts: [30, frame.bytes.count / 2 + 1], to: batch)
            frame.header.store(to: batch.header(batch.count - 1))
        }
        arena.append(plain, cuts: [7], to: batch)

        port.push(queue: 0, from: batch, segmenter: SoftwareSegmenter())

        let expected = [plain] + (try segmentWithFerry(gso, checksum: .complete).1.map(\.1))
            + (try segmentWithFerry(udp, checksum: .complete).1.map(\.1)) + [plain]
        for (i, frame) in expected.enumerated() {
            let received = try XCTUnwrap(try socket.receive(timeout: 2), "frame \(i) never arrived")
            XCTAssertEqual(received, frame, "frame \(i)")
            if i > 0 && i < expected.count - 1 { XCTAssertNil(checksumProblem(in: received), "segment \(i)") }
        }
        XCTAssertNil(try socket.receive(timeout: 0.05))
        let snapshot = port.counters[0].snapshot
        XCTAssertEqual(snapshot.txPackets, UInt64(expected.count))
        XCTAssertEqual(snapshot.txBytes, UInt64(expected.reduce(0) { $0 + $1.count }))
        XCTAssertEqual(snapshot.offloads[.segmentedFrames], 2)
        XCTAssertEqual(snapshot.offloads[.segmentsOut], 7 + 3)
        XCTAssertEqual(snapshot.drops, [.tooLong: 4], "1461 + 54 bytes: one more than the MTU takes")
    }

    /// A burst that makes more segments than the TX ring has room for: what
    /// fits goes, every other segment is counted `tx_full`, to the segment.
    func testAFullTransmitRingCountsEverySegmentLeftOver() throws {
        let veth = try VethPair("xr")
        let port = try makePort(veth.name, queues: 1)
        let arena = FrameArena()
        // 42 segments each: 64 of them are 2,688, the ring holds 2,048.
        let gso = GSOTestFrame(payloadLength: 60_000, segmentSize: 1448)
        let batch = PacketBatch(capacity: 64)
        for i in 0..<64 {
            arena.append(gso.bytes, cuts: [], to: batch)
            gso.header.store(to: batch.header(i))
        }

        port.push(queue: 0, from: batch, segmenter: SoftwareSegmenter())

        let snapshot = port.counters[0].snapshot
        XCTAssertEqual(Int(XdpPort.ringSize), 2048)
        XCTAssertEqual(snapshot.txPackets, 2048)
        XCTAssertEqual(snapshot.offloads[.segmentedFrames], 64)
        XCTAssertEqual(snapshot.offloads[.segmentsOut], 2048)
        XCTAssertEqual(snapshot.drops, [.txFull: 64 * 42 - 2048])
    }

    func testUnknownInterfaceIsAClearError() {
        XCTAssertThrowsError(try XdpPort(interface: "fxnosuch0", queues: nil, attach: .auto, zeroCopy: .auto,
                                         guestCapacity: 8, logger: Logger(label: "test"))) {
            XCTAssertTrue("\($0)".contains("no such interface 'fxnosuch0'"), "\($0)")
        }
    }

    func testZeroCopyOnIsRefusedWhereTheDriverCannotDoIt() throws {
        let veth = try VethPair("xz")
        let portName = veth.name
        XCTAssertThrowsError(try XdpPort(interface: portName, queues: 1, attach: .auto, zeroCopy: .on,
                                         guestCapacity: 8, logger: Logger(label: "test"))) {
            XCTAssertTrue("\($0)".contains("bind(AF_XDP"), "\($0)")
        }
        XCTAssertFalse(try NetworkSandbox.ip("link", "show", portName).contains("prog/xdp"),
                       "a port that failed to open leaves no program behind")
    }

    func testSteeredFramesArePulledByteExactOthersGoToTheKernelAndFramesAreRecycled() throws {
        let veth = try VethPair("xr")
        let portName = veth.name
        let port = try makePort(portName)
        let guest: [UInt8] = [2, 0, 0, 0, 0, 0x42]
        try port.steering.addGuest(MACAddress(2, 0, 0, 0, 0, 0x42), vlan: 0)
        let socket = try veth.peerSocket()
        let batch = PacketBatch(capacity: 64)
        var pulled = 0
        // More frames than the queue has receive frames: release must recycle them.
        let rounds = Int(XdpPort.receiveFrames) / 32 + 8
        for r in 0..<rounds {
            var frames: [[UInt8]] = []
            for i in 0..<32 {
                let frame = udpFrame(sourcePort: UInt16(truncatingIfNeeded: r * 32 + i), size: i % 2 == 0 ? 64 : 1514,
                                           destination: guest)
                try socket.send(frame)
                frames.append(frame)
            }
            // To 02:00:00:00:00:02, not a guest: the kernel gets it, and Ferry its copy.
            let other = udpFrame(sourcePort: 1, size: 100)
            try socket.send(other)
            var got: [[UInt8]] = []
            let deadline = Date().addingTimeInterval(2)
            while got.count < 33 && Date() < deadline {
                batch.reset()
                let n = port.pull(queue: 0, into: batch)
                for f in 0..<batch.count {
                    got.append(bytes(of: batch, frame: f))
                    XCTAssertEqual(batch.header(f).load(as: UInt64.self), 0, "frames from the wire carry no offload flags")
                }
                if n > 0 { port.release(queue: 0) } else { usleep(1000) }
            }
            let steered = got.filter { Array($0.prefix(6)) == guest }
            XCTAssertTrue(steered == frames, "round \(r): the guest's frames, in order, once each")
            XCTAssertEqual(got.filter { Array($0.prefix(6)) != guest }, [other], "round \(r): the copy of the other frame")
            pulled += steered.count
            if steered != frames { break }
        }
        let snapshot = port.counters[0].snapshot
        XCTAssertEqual(snapshot.rxPackets, UInt64(pulled))
        XCTAssertEqual(snapshot.drops, [:])
        XCTAssertEqual(port.copies.counters.snapshot.rxPackets, UInt64(rounds), "one copy per round")
        let stats = port.steering.statistics()
        XCTAssertEqual(stats.steered, UInt64(rounds * 32))
        XCTAssertGreaterThanOrEqual(stats.passed, UInt64(rounds), "frames for other stations pass to the kernel")
    }

    func testClosingDetachesTheProgram() throws {
        let veth = try VethPair("xd")
        let portName = veth.name
        let port = try makePort(portName, attach: .generic)
        XCTAssertEqual(port.steering.attachedMode, .generic)
        XCTAssertEqual(port.copyMode, .copy, "generic XDP forces copy mode")
        XCTAssertTrue(try NetworkSandbox.ip("link", "show", portName).contains("xdpgeneric"))
        port.close()
        XCTAssertFalse(try NetworkSandbox.ip("link", "show", portName).contains("xdp"))
    }

    /// Pulls until the tunnel frames of a pull arrive (2 s at most); nothing is switched as the uplink's own.
    private func tunnelFrames(of port: XdpPort) -> [[UInt8]] {
        let batch = PacketBatch(capacity: 64)
        var frames: [[UInt8]] = []
        let deadline = MonotonicClock.seconds() + 2
        while frames.isEmpty && MonotonicClock.seconds() < deadline {
            batch.reset()
            _ = port.pull(queue: 0, into: batch)
            XCTAssertEqual(batch.count, 0, "nothing to switch as the uplink's own")
            if let tunnel = port.tunnelFrames(queue: 0) {
                frames += (0..<tunnel.count).map { bytes(of: tunnel, frame: $0) }
            }
            port.release(queue: 0)
        }
        return frames
    }

    /// A tunnel steered to the port (`via=`): UDP to its address and port arrives in
    /// `tunnelFrames`, apart from the switched batch; other UDP to the interface stays with the kernel.
    func testTunnelDatagramsAreSteeredAndSetApart() throws {
        let veth = try VethPair("xv")
        let port = try makePort(veth.name, queues: 1)
        let local = InternetAddress("198.18.61.1")!
        try port.steerTunnel(local: local, udpPort: 4789)
        let mac = try NetworkInterface.hardwareAddress(of: veth.name).array
        let socket = try veth.peerSocket()
        func datagram(port: UInt16) -> [UInt8] {
            let udp: [UInt8] = [0xC3, 0x50, UInt8(port >> 8), UInt8(port & 0xff), 0, 24, 0, 0] + [UInt8](repeating: 7, count: 16)
            let ip: [UInt8] = [0x45, 0, 0, 44, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 61, 2, 198, 18, 61, 1]
            return mac + [2, 0, 0, 0, 0, 0x62, 0x08, 0x00] + ip + udp
        }
        try socket.send(datagram(port: 53))
        try socket.send(datagram(port: 4789))
        XCTAssertEqual(tunnelFrames(of: port), [datagram(port: 4789)])
        XCTAssertEqual(port.steering.tunnelDatagrams(), 1)
        let batch = PacketBatch(capacity: 64)
        _ = port.pull(queue: 0, into: batch)
        XCTAssertNil(port.tunnelFrames(queue: 0), "the next pull starts empty")
        port.release(queue: 0)
    }

    /// The same over IPv6 (no extension headers); a datagram behind a hop-by-hop
    /// header, and a fragment, stay with the kernel.
    func testIPv6TunnelDatagramsAreSteeredButNotBehindExtensionHeaders() throws {
        let veth = try VethPair("xw")
        let port = try makePort(veth.name, queues: 1)
        try port.steerTunnel(local: InternetAddress("2001:db8:61::1")!, udpPort: 4789)
        let mac = try NetworkInterface.hardwareAddress(of: veth.name).array
        let socket = try veth.peerSocket()
        let source: [UInt8] = [0x20, 0x01, 0x0d, 0xb8, 0, 0x61] + [UInt8](repeating: 0, count: 9) + [2]
        let destination: [UInt8] = [0x20, 0x01, 0x0d, 0xb8, 0, 0x61] + [UInt8](repeating: 0, count: 9) + [1]
        let udp: [UInt8] = [0xC3, 0x50, 0x12, 0xB5, 0, 24, 0, 0] + [UInt8](repeating: 7, count: 16)
        func packet(nextHeader: UInt8, extensionHeader: [UInt8] = []) -> [UInt8] {
            let payload = extensionHeader + udp
            let ip: [UInt8] = [0x60, 0, 0, 0, 0, UInt8(payload.count), nextHeader, 64] + source + destination
            return mac + [2, 0, 0, 0, 0, 0x62, 0x86, 0xDD] + ip + payload
        }
        let plain = packet(nextHeader: 17)
        try socket.send(packet(nextHeader: 0, extensionHeader: [17, 0, 1, 4, 0, 0, 0, 0]))
        try socket.send(packet(nextHeader: 44, extensionHeader: [17, 0, 0, 1, 0, 0, 0, 9]))
        try socket.send(plain)
        XCTAssertEqual(tunnelFrames(of: port), [plain])
        XCTAssertEqual(port.steering.tunnelDatagrams(), 1)
    }
}

