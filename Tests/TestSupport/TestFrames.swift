import Packets

// Frames for tests on real interfaces and the ports that carry them.

/// The bytes of `frame` in `batch`, its segments joined.
public func bytes(of batch: PacketBatch, frame: Int) -> [UInt8] {
    var out: [UInt8] = []
    for s in batch.segments(of: frame) {
        out += UnsafeRawBufferPointer(start: batch.segmentBase(s), count: batch.segmentLength(s))
    }
    return out
}

/// Ethernet + IPv4 + UDP from 198.18.0.1 to 198.18.0.2 (RFC 2544 benchmarking
/// range), `size` bytes in all, to a MAC no host has; shorter sizes cut the
/// headers short. The payload counts up so that cut or shifted bytes show.
/// With `partialChecksum` the UDP checksum field holds the pseudo-header sum
/// only, as a sender that leaves the checksum to the device writes it.
public func udpFrame(sourcePort: UInt16, size: Int, partialChecksum: Bool = false,
                     destination: [UInt8] = [2, 0, 0, 0, 0, 2]) -> [UInt8] {
    let ipLength = max(28, size - 14)
    let ip = ipv4Header(protocol: 17, length: ipLength)
    let udpLength = ipLength - 20
    var udp: [UInt8] = [UInt8(sourcePort >> 8), UInt8(sourcePort & 0xff), 0x13, 0x88,
                        UInt8(udpLength >> 8), UInt8(udpLength & 0xff), 0, 0]
    udp += (0..<(udpLength - 8)).map { UInt8(truncatingIfNeeded: $0) }
    if partialChecksum {
        let pseudo = onesComplementSum(pseudoHeader(udpLength: udpLength)[...])
        udp[6] = UInt8(pseudo >> 8)
        udp[7] = UInt8(pseudo & 0xff)
    }
    let frame = destination + [2, 0, 0, 0, 0, 1, 0x08, 0x00] + ip + udp
    return Array(frame.prefix(size))
}

public func pseudoHeader(udpLength: Int) -> [UInt8] {
    [198, 18, 0, 1, 198, 18, 0, 2, 0, 17, UInt8(udpLength >> 8), UInt8(udpLength & 0xff)]
}

/// The UDP checksum check of `frame` (RFC 768): 0 when the checksum is right.
public func udpChecksum(of frame: [UInt8]) -> UInt16 {
    let udp = frame[34...]
    return ~onesComplementSum(pseudoHeader(udpLength: udp.count)[...] + udp)
}

/// Memory for the frames a test pushes, cut into segments the way a guest's
/// scattered buffers would hold them; freed with the arena.
public final class FrameArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    public init() {}

    deinit { for block in blocks { block.deallocate() } }

    /// Appends `frame` to `batch` as segments cut at offsets `cuts` (ascending),
    /// each in a block of its own; the header slot is zeroed.
    public func append(_ frame: [UInt8], cuts: [Int], to batch: PacketBatch) {
        let bounds = [0] + cuts + [frame.count]
        let i = batch.count
        let first = batch.segmentCount
        var next = first
        for (start, end) in zip(bounds, bounds.dropFirst()) {
            let block = UnsafeMutableRawPointer.allocate(byteCount: max(1, end - start), alignment: 1)
            blocks.append(block)
            frame[start..<end].withUnsafeBytes { block.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            batch.setSegment(next, base: block, length: UInt32(end - start))
            next += 1
        }
        batch.header(i).initializeMemory(as: UInt8.self, repeating: 0, count: PacketBatch.headerSize)
        batch.appendFrame(segments: first..<next, length: UInt32(frame.count), token: UInt32(i))
    }
}

/// Ethernet + IPv4 + TCP (an ACK with a payload) from 198.18.0.1 to
/// 198.18.0.2, `size` bytes in all (at least 54); with `partialChecksum` the
/// TCP checksum field holds the pseudo-header sum only.
public func tcpFrame(size: Int, partialChecksum: Bool = false) -> [UInt8] {
    let ipLength = size - 14
    let ip = ipv4Header(protocol: 6, length: ipLength)
    let tcpLength = ipLength - 20
    var tcp: [UInt8] = [0x9c, 0x40, 0x00, 0x50, 0, 0, 0x10, 0, 0, 0, 0x20, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]
    tcp += (0..<(tcpLength - 20)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
    let pseudo: [UInt8] = [198, 18, 0, 1, 198, 18, 0, 2, 0, 6, UInt8(tcpLength >> 8), UInt8(tcpLength & 0xff)]
    let sum = onesComplementSum(pseudo[...])
    tcp[16] = UInt8(sum >> 8)
    tcp[17] = UInt8(sum & 0xff)
    if !partialChecksum {
        tcp[16] = 0
        tcp[17] = 0
        let full = ~onesComplementSum(pseudo[...] + tcp[...])
        tcp[16] = UInt8(full >> 8)
        tcp[17] = UInt8(full & 0xff)
    }
    return [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00] + ip + tcp
}

/// `frame` (untagged) with an 802.1Q tag for `vlan` after its MAC addresses.
public func tagged(_ frame: [UInt8], vlan: UInt16) -> [UInt8] {
    Array(frame[..<12]) + [0x81, 0x00, UInt8(vlan >> 8), UInt8(vlan & 0xff)] + Array(frame[12...])
}

/// An IPv4 header from 198.18.0.1 to 198.18.0.2 with its checksum, for a datagram of `length` bytes.
private func ipv4Header(protocol number: UInt8, length: Int) -> [UInt8] {
    var ip: [UInt8] = [0x45, 0, UInt8(length >> 8), UInt8(length & 0xff), 0, 0, 0x40, 0, 64, number, 0, 0,
                       198, 18, 0, 1, 198, 18, 0, 2]
    let sum = ~onesComplementSum(ip[...])
    ip[10] = UInt8(sum >> 8)
    ip[11] = UInt8(sum & 0xff)
    return ip
}
