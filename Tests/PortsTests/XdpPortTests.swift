import Foundation
import Glibc
import Packets
import Platform
import Ports
import TestSupport
import XCTest

/// AF_XDP ports on real veth pairs (copy mode: veth has no zero-copy). A
/// packet socket on the peer stands for the wire. Receiving needs the
/// steering program, so these tests cover what the socket does alone:
/// transmit, frame recycling, checksums, limits. They need root.
final class XdpPortTests: XCTestCase {
    private var names: [String] = []

    override func setUpWithError() throws {
        try NetworkSandbox.requireTapSupport()
    }

    override func tearDown() {
        for name in names { NetworkSandbox.removeInterface(name) }
    }

    /// A veth pair, both ends up and quiet (no IPv6 chatter): the port's end, the wire's end.
    private func makeVeth(_ suffix: String) throws -> (port: String, wire: String) {
        let port = NetworkSandbox.interfaceName("fx", suffix + "p")
        let wire = NetworkSandbox.interfaceName("fx", suffix + "w")
        NetworkSandbox.removeInterface(port)
        try NetworkSandbox.ip("link", "add", port, "numtxqueues", "1", "numrxqueues", "1",
                              "type", "veth", "peer", "name", wire, "numtxqueues", "1", "numrxqueues", "1")
        names.append(port)
        for name in [port, wire] {
            try NetworkSandbox.disableIPv6(name)
            try NetworkSandbox.ip("link", "set", name, "up")
        }
        return (port, wire)
    }

    func testPushedFramesReachTheWireByteExactAndFramesAreRecycled() throws {
        let (portName, wire) = try makeVeth("t")
        let port = try XdpPort(interface: portName, queues: nil, zeroCopy: .auto, forceCopy: false)
        XCTAssertEqual(port.queueCount, 1)
        XCTAssertEqual(port.copyMode, .copy, "veth cannot do zero-copy")
        XCTAssertNotNil(port.zeroCopyFallback, "auto says why it fell back")
        let socket = try PacketSocket(interface: if_nametoindex(wire))
        let arena = FrameArena()
        // More bursts than the port has transmit frames: completions must recycle them.
        let bursts = Int(XdpPort.ringSize) / 64 + 4
        var sent: [[UInt8]] = []
        for b in 0..<bursts {
            let batch = PacketBatch(capacity: 64)
            for i in 0..<64 {
                let frame = TestFrames.udp(sourcePort: UInt16(b * 64 + i), size: [60, 64, 128, 1514][i % 4])
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
        let (portName, wire) = try makeVeth("c")
        let port = try XdpPort(interface: portName, queues: 1, zeroCopy: .off, forceCopy: false)
        XCTAssertNil(port.zeroCopyFallback, "zerocopy=off asks for nothing to fall back from")
        XCTAssertEqual(port.maxFrameLength, 1518, "MTU 1500 + Ethernet header + one 802.1Q tag")
        let socket = try PacketSocket(interface: if_nametoindex(wire))
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 8)
        let partial = TestFrames.udp(sourcePort: 7, size: 300, partialChecksum: true)
        arena.append(partial, cuts: [20, 41], to: batch)
        // NEEDS_CSUM, csum_start 34 (the UDP header), csum_offset 6.
        batch.header(0).storeBytes(of: 1, as: UInt8.self)
        batch.header(0).storeBytes(of: UInt16(34).littleEndian, toByteOffset: 6, as: UInt16.self)
        batch.header(0).storeBytes(of: UInt16(6).littleEndian, toByteOffset: 8, as: UInt16.self)
        arena.append(TestFrames.udp(sourcePort: 8, size: 1519), cuts: [], to: batch)
        let hostile = TestFrames.udp(sourcePort: 9, size: 100, partialChecksum: true)
        arena.append(hostile, cuts: [], to: batch)
        batch.header(2).storeBytes(of: 1, as: UInt8.self)
        batch.header(2).storeBytes(of: UInt16(90).littleEndian, toByteOffset: 6, as: UInt16.self)
        batch.header(2).storeBytes(of: UInt16(9).littleEndian, toByteOffset: 8, as: UInt16.self)
        let plain = TestFrames.udp(sourcePort: 10, size: 1518)
        arena.append(plain, cuts: [], to: batch)

        port.push(queue: 0, from: batch)

        let first = try XCTUnwrap(try socket.receive(timeout: 2))
        XCTAssertEqual(first.count, partial.count)
        XCTAssertEqual(TestFrames.udpChecksum(of: first), 0, "the UDP checksum was finished")
        XCTAssertEqual(Array(first[..<40]), Array(partial[..<40]), "only the checksum field changed")
        XCTAssertEqual(Array(first[42...]), Array(partial[42...]))
        XCTAssertEqual(try socket.receive(timeout: 2), plain)
        XCTAssertNil(try socket.receive(timeout: 0.05))
        let snapshot = port.counters[0].snapshot
        XCTAssertEqual(snapshot.txPackets, 2)
        XCTAssertEqual(snapshot.drops, [.tooLong: 1, .badChecksumRequest: 1])
    }

    func testUnknownInterfaceIsAClearError() {
        XCTAssertThrowsError(try XdpPort(interface: "fxnosuch0", queues: nil, zeroCopy: .auto, forceCopy: false)) {
            XCTAssertTrue("\($0)".contains("no interface named 'fxnosuch0'"), "\($0)")
        }
    }

    func testZeroCopyOnIsRefusedWhereTheDriverCannotDoIt() throws {
        let (portName, _) = try makeVeth("z")
        XCTAssertThrowsError(try XdpPort(interface: portName, queues: 1, zeroCopy: .on, forceCopy: false)) {
            XCTAssertTrue("\($0)".contains("bind(AF_XDP"), "\($0)")
        }
    }
}
