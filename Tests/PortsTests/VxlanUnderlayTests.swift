import Glibc
import Logging
import Model
import Packets
import Platform
@testable import Ports
import TestSupport
import XCTest

/// A vxlan port's frames for an `xdp:` uplink (`via=`): the outer headers it
/// writes from a VTEP's template, and the frames of a push as the uplink would
/// copy them (`gather`, which finishes checksums). No uplink is needed: the
/// templates are published by hand, as the control thread does once it has
/// read the next hop's MAC. The port's sockets need root, as in VxlanPortTests.
final class VxlanUnderlayTests: XCTestCase {
    let nextHop: UInt64 = 0x0200_0018_02fe
    let vni: UInt32 = 5002

    override func setUpWithError() throws {
        guard geteuid() == 0 else { throw NetworkSandbox.Unavailable("vxlan port tests need root: the port sends through a raw socket") }
    }

    private func port(remotes: [String], local: String = "127.0.0.1", offset: UInt16 = 10) throws -> VxlanPort {
        try VxlanPort(vni: vni, local: InternetAddress(local)!, remotes: remotes.map { InternetAddress($0)! },
                      udpPort: UDPPeer.testPort &+ offset, via: "up", batchCapacity: 16, logger: Logger(label: "test"))
    }

    func testIPv4HeadersCarryLengthsAValidChecksumAndTheVNI() throws {
        let port = try port(remotes: ["127.0.0.2"])
        let underlay = try XCTUnwrap(port.underlay)
        XCTAssertEqual(underlay.template(for: 1), 0, "nothing resolved yet")
        underlay.publish(1, nextHopMAC: nextHop)
        XCTAssertEqual(underlay.template(for: 1), 1)
        var block = [UInt8](repeating: 0xAA, count: VxlanUnderlay.blockStride)
        let length = block.withUnsafeMutableBytes {
            underlay.writeHeaders(1, template: 1, into: $0.baseAddress!, innerLength: 60, sourcePort: 50_000,
                                  destinationPort: 4789, vni: vni)
        }
        XCTAssertEqual(length, 50)
        XCTAssertEqual(Array(block[0..<6]), [0x02, 0, 0, 0x18, 0x02, 0xfe], "the next hop's MAC")
        XCTAssertEqual(Array(block[12..<14]), [0x08, 0x00])
        let ip = Array(block[14..<34])
        XCTAssertEqual(ip[0], 0x45)
        XCTAssertEqual(Int(ip[2]) << 8 | Int(ip[3]), 20 + 8 + 8 + 60, "total length")
        XCTAssertEqual(Array(ip[6..<8]), [0x40, 0], "DF, never fragmented")
        XCTAssertEqual(ip[8], 64)
        XCTAssertEqual(ip[9], 17)
        XCTAssertEqual(onesComplementSum(ip[...]), 0xFFFF, "the IPv4 header checksum is right")
        XCTAssertEqual(Array(ip[12..<20]), [127, 0, 0, 1, 127, 0, 0, 2])
        let udp = Array(block[34..<50])
        XCTAssertEqual(Array(udp[0..<8]), [0xC3, 0x50, 0x12, 0xB5, 0, 76, 0, 0], "ports, length, checksum zero")
        XCTAssertEqual(Array(udp[8..<16]), [0x08, 0, 0, 0, 0, 0x13, 0x8A, 0], "I flag, VNI 5002")

        // The same MAC again keeps the template; a new one takes the other.
        underlay.publish(1, nextHopMAC: nextHop)
        XCTAssertEqual(underlay.template(for: 1), 1)
        underlay.publish(1, nextHopMAC: 0x0200_0018_0299)
        XCTAssertEqual(underlay.template(for: 1), 2)
        block.withUnsafeMutableBytes {
            _ = underlay.writeHeaders(1, template: 2, into: $0.baseAddress!, innerLength: 1400, sourcePort: 50_000,
                                      destinationPort: 4789, vni: vni)
        }
        XCTAssertEqual(block[5], 0x99)
        XCTAssertEqual(onesComplementSum(block[14..<34]), 0xFFFF, "the checksum follows the length")
    }

    func testAPushFloodsByReferenceAndTheUplinkCopyFinishesChecksums() throws {
        let port = try port(remotes: ["127.0.0.2", "127.0.0.3"], offset: 11)
        let underlay = try XCTUnwrap(port.underlay)
        underlay.publish(1, nextHopMAC: nextHop)
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 8)
        let plain = udpFrame(sourcePort: 7, size: 60)
        arena.append(plain, cuts: [], to: batch)
        let partial = udpFrame(sourcePort: 8, size: 300, partialChecksum: true)
        arena.append(partial, cuts: [20, 41], to: batch)
        batch.header(1).storeBytes(of: 1, as: UInt8.self)
        batch.header(1).storeBytes(of: UInt16(34).littleEndian, toByteOffset: 6, as: UInt16.self)
        batch.header(1).storeBytes(of: UInt16(6).littleEndian, toByteOffset: 8, as: UInt16.self)
        var frames: [[UInt8]] = []
        port.pushThroughUnderlay(from: batch, segmenter: nil) { out in
            for i in 0..<out.count {
                var copy = [UInt8](repeating: 0, count: 2048)
                let refused = copy.withUnsafeMutableBytes {
                    out.gather(i, into: $0.baseAddress!, limit: 2048, untaggedLimit: 1514)
                }
                XCTAssertNil(refused)
                frames.append(Array(copy[0..<out.length(of: i)]))
            }
        }
        // Two frames flooded to two VTEPs, one of which has no next hop yet.
        XCTAssertEqual(frames.count, 2)
        XCTAssertEqual(Array(frames[0][50...]), plain)
        XCTAssertEqual(udpChecksum(of: Array(frames[1][50...])), 0, "the inner checksum was finished past the outer headers")
        XCTAssertEqual(frames[1].count, 50 + 300)
        for frame in frames {
            XCTAssertEqual(Array(frame[30..<34]), [127, 0, 0, 2], "to the resolved VTEP only")
            XCTAssertGreaterThanOrEqual(Int(frame[34]) << 8 | Int(frame[35]), 49_152, "a source port of the dynamic range")
        }
        let snapshot = port.counters[0].snapshot
        XCTAssertEqual(snapshot.drops, [.vxlanUnresolvedVTEP: 2])
        XCTAssertEqual(snapshot.txPackets, 2)
        XCTAssertEqual(port.endpoints.counters(1).txPackets, 2)
        XCTAssertEqual(underlay.wanted[2], 1, "the unresolved VTEP is asked for")
    }

    func testIPv6LeavesTheOuterUDPChecksumToTheUplinksCopy() throws {
        let port = try port(remotes: ["::1"], local: "::1", offset: 12)
        XCTAssertEqual(Port.vxlan(port).offloadAcceptance, [], "inner checksums come finished over IPv6")
        let underlay = try XCTUnwrap(port.underlay)
        underlay.publish(1, nextHopMAC: nextHop)
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 2)
        let inner = udpFrame(sourcePort: 9, size: 123)
        arena.append(inner, cuts: [30], to: batch)
        var frame: [UInt8] = []
        port.pushThroughUnderlay(from: batch, segmenter: nil) { out in
            var copy = [UInt8](repeating: 0, count: 2048)
            XCTAssertNil(copy.withUnsafeMutableBytes { out.gather(0, into: $0.baseAddress!, limit: 2048, untaggedLimit: 1514) })
            frame = Array(copy[0..<out.length(of: 0)])
        }
        XCTAssertEqual(frame.count, 70 + 123)
        XCTAssertEqual(Array(frame[12..<14]), [0x86, 0xDD])
        XCTAssertEqual(Int(frame[18]) << 8 | Int(frame[19]), 8 + 8 + 123, "payload length")
        XCTAssertEqual(Array(frame[70...]), inner)
        let udp = frame[54...]
        let pseudo = Array(frame[22..<54]) + [0, 0, UInt8(udp.count >> 8), UInt8(udp.count & 0xff), 0, 0, 0, 17]
        XCTAssertNotEqual(Array(frame[60..<62]), [0, 0], "IPv6 UDP carries a checksum")
        XCTAssertEqual(onesComplementSum(pseudo[...] + udp), 0xFFFF, "and it is right")
    }

    /// An outer IPv4/UDP frame from `source` to 127.0.0.1:`port` carrying `payload`; `udpLength` overrides the field.
    private func outerFrame(from source: [UInt8], port: UInt16, payload: [UInt8], udpLength: Int? = nil,
                            ihl: UInt8 = 5) -> [UInt8] {
        let udpBytes = udpLength ?? 8 + payload.count
        var ip: [UInt8] = [0x40 | ihl, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0] + source + [127, 0, 0, 1]
        ip += [UInt8](repeating: 0, count: Int(ihl - 5) * 4)
        let udp: [UInt8] = [0xC3, 0x50, UInt8(port >> 8), UInt8(port & 0xff), UInt8(udpBytes >> 8), UInt8(udpBytes & 0xff), 0, 0]
        return [2, 0, 0, 0, 0, 0xaa, 2, 0, 0, 0, 0, 0xbb, 0x08, 0x00] + ip + udp + payload
    }

    func testDatagramsFromTheUplinkGoThroughTheSameDecoderAndItsRefusals() throws {
        let udpPort = UDPPeer.testPort &+ 13
        let port = try port(remotes: ["127.0.0.2"], offset: 13)
        let inner = udpFrame(sourcePort: 7, size: 80)
        let good = vxlanHeader(vni: vni) + inner
        var flagClear = good
        flagClear[0] = 0
        let frames: [[UInt8]] = [
            outerFrame(from: [127, 0, 0, 2], port: udpPort, payload: good),
            outerFrame(from: [127, 0, 0, 2], port: udpPort, payload: flagClear),
            outerFrame(from: [127, 0, 0, 2], port: udpPort, payload: vxlanHeader(vni: vni + 1) + inner),
            outerFrame(from: [127, 0, 0, 9], port: udpPort, payload: good),
            outerFrame(from: [127, 0, 0, 2], port: udpPort, payload: good, udpLength: 8 + good.count + 1),
            outerFrame(from: [127, 0, 0, 2], port: udpPort, payload: Array(good[0..<12])),
            // Not the port's: another UDP port, IPv4 options (the program leaves both to the kernel).
            outerFrame(from: [127, 0, 0, 2], port: udpPort &+ 1, payload: good),
            outerFrame(from: [127, 0, 0, 2], port: udpPort, payload: good, ihl: 6),
        ]
        let arena = FrameArena()
        let underlay = PacketBatch(capacity: 16)
        for frame in frames { arena.append(frame, cuts: [], to: underlay) }
        let batch = PacketBatch(capacity: 16)
        XCTAssertEqual(port.decapsulate(underlay: underlay, queue: 0, into: batch), 6, "six frames are the port's")
        XCTAssertEqual(batch.count, 1)
        XCTAssertEqual(bytes(of: batch, frame: 0), inner)
        XCTAssertEqual(batch.tunnelEndpoint(of: 0), 1, "marked with its VTEP, for learning")
        let snapshot = port.counters[1].snapshot
        XCTAssertEqual(snapshot.rxPackets, 1)
        XCTAssertEqual(snapshot.drops, [.vxlanFlagClear: 1, .vxlanUnknownVNI: 1, .vxlanUnknownVTEP: 1,
                                        .vxlanTruncated: 2])
        XCTAssertEqual(port.counters[0].snapshot.rxPackets, 0, "queue 0 is the kernel socket's")
        XCTAssertEqual(port.endpoints.count, 1, "a stranger is never numbered here")
    }

    /// An outer IPv6/UDP frame from ::2 to ::1:`port` carrying `payload`, its UDP checksum
    /// right, zero (`checksummed` false), right plus `corruption`, or `partial`: the
    /// pseudo-header's sum alone, as a local sender leaves it for its device.
    private func outerIPv6Frame(port: UInt16, payload: [UInt8], checksummed: Bool = true,
                                corruption: UInt16 = 0, partial: Bool = false) -> [UInt8] {
        let length = 8 + payload.count
        var udp: [UInt8] = [0xC3, 0x50, UInt8(port >> 8), UInt8(port & 0xff), UInt8(length >> 8), UInt8(length & 0xff),
                            0, 0] + payload
        let loopback2: [UInt8] = [UInt8](repeating: 0, count: 15) + [2]
        let loopback1: [UInt8] = [UInt8](repeating: 0, count: 15) + [1]
        if checksummed {
            let pseudo = loopback2 + loopback1 + [0, 0, UInt8(length >> 8), UInt8(length & 0xff), 0, 0, 0, 17]
            var checksum = ~onesComplementSum((pseudo + udp)[...]) &+ corruption
            if checksum == 0 { checksum = 0xFFFF }
            if partial { checksum = onesComplementSum(pseudo[...]) }
            udp[6] = UInt8(checksum >> 8)
            udp[7] = UInt8(checksum & 0xff)
        }
        let ip: [UInt8] = [0x60, 0, 0, 0, UInt8(length >> 8), UInt8(length & 0xff), 17, 64] + loopback2 + loopback1
        return [2, 0, 0, 0, 0, 0xaa, 2, 0, 0, 0, 0, 0xbb, 0x86, 0xDD] + ip + udp
    }

    func testIPv6DatagramsFromTheUplinkAreDecapsulatedTheirChecksumsVerified() throws {
        let udpPort = UDPPeer.testPort &+ 14
        let port = try port(remotes: ["::2"], local: "::1", offset: 14)
        let inner = udpFrame(sourcePort: 7, size: 70)
        let payload = vxlanHeader(vni: vni) + inner
        var odd = payload + [0x5A]
        odd[odd.count - 2] = 0x33
        let arena = FrameArena()
        let underlay = PacketBatch(capacity: 8)
        arena.append(outerIPv6Frame(port: udpPort, payload: payload), cuts: [], to: underlay)
        arena.append(outerIPv6Frame(port: udpPort, payload: payload, checksummed: false), cuts: [], to: underlay)
        arena.append(outerIPv6Frame(port: udpPort, payload: payload, corruption: 1), cuts: [], to: underlay)
        arena.append(outerIPv6Frame(port: udpPort, payload: odd), cuts: [], to: underlay)
        arena.append(outerIPv6Frame(port: udpPort, payload: odd, corruption: 0x100), cuts: [], to: underlay)
        arena.append(outerIPv6Frame(port: udpPort, payload: payload, partial: true), cuts: [], to: underlay)
        let batch = PacketBatch(capacity: 8)
        XCTAssertEqual(port.decapsulate(underlay: underlay, queue: 2, into: batch), 6)
        XCTAssertEqual(batch.count, 4, "a right checksum, none (zero), a right one over an odd length, an unfinished one")
        XCTAssertEqual(bytes(of: batch, frame: 0), inner)
        XCTAssertEqual(batch.tunnelEndpoint(of: 0), 1)
        let snapshot = port.counters(queue: 3).snapshot
        XCTAssertEqual(snapshot.rxPackets, 4, "counted on queue 1 + the uplink's queue")
        XCTAssertEqual(snapshot.drops, [.vxlanBadChecksum: 2])
        XCTAssertEqual(port.counters(queue: 1).snapshot.rxPackets, 0, "the uplink's queue 0 took none")
        XCTAssertEqual(port.endpoints.counters(1).rxPackets, 4)
    }

    func testIPv4DatagramsWithAChecksumHaveItVerified() throws {
        let udpPort = UDPPeer.testPort &+ 15
        let port = try port(remotes: ["127.0.0.2"], offset: 15)
        let payload = vxlanHeader(vni: vni) + udpFrame(sourcePort: 7, size: 64)
        var good = outerFrame(from: [127, 0, 0, 2], port: udpPort, payload: payload)
        let pseudo: [UInt8] = [127, 0, 0, 2, 127, 0, 0, 1, 0, 17, 0, UInt8(8 + payload.count)]
        let checksum = ~onesComplementSum((pseudo + good[34...])[...])
        good[40] = UInt8(checksum >> 8)
        good[41] = UInt8(checksum & 0xff)
        var bad = good
        bad[41] ^= 0x01
        let arena = FrameArena()
        let underlay = PacketBatch(capacity: 4)
        for frame in [good, bad] { arena.append(frame, cuts: [], to: underlay) }
        let batch = PacketBatch(capacity: 4)
        XCTAssertEqual(port.decapsulate(underlay: underlay, queue: 0, into: batch), 2)
        XCTAssertEqual(batch.count, 1)
        XCTAssertEqual(port.counters(queue: 1).snapshot.drops, [.vxlanBadChecksum: 1])
    }
}

