import Packets

/// Frames the port tests send and compare: UDP over IPv4 in the benchmarking
/// range (RFC 2544), and the batch plumbing to push them from scattered memory.
public enum TestFrames {
    /// Ethernet + IPv4 + UDP from 198.18.0.1 to 198.18.0.2, `size` bytes in all,
    /// to a MAC no host has; shorter sizes cut the headers short. The payload
    /// counts up so that cut or shifted bytes show. With `partialChecksum` the
    /// UDP checksum field holds the pseudo-header sum only, as a sender that
    /// leaves the checksum to the device writes it.
    public static func udp(sourcePort: UInt16, size: Int, partialChecksum: Bool = false,
                           destination: [UInt8] = [2, 0, 0, 0, 0, 2], source: [UInt8] = [2, 0, 0, 0, 0, 1]) -> [UInt8] {
        let ipLength = max(28, size - 14)
        var ip: [UInt8] = [0x45, 0, UInt8(ipLength >> 8), UInt8(ipLength & 0xff), 0, 0, 0x40, 0, 64, 17, 0, 0,
                           198, 18, 0, 1, 198, 18, 0, 2]
        let ipSum = ~onesComplementSum(ip[...])
        ip[10] = UInt8(ipSum >> 8)
        ip[11] = UInt8(ipSum & 0xff)
        let udpLength = ipLength - 20
        var udp: [UInt8] = [UInt8(sourcePort >> 8), UInt8(sourcePort & 0xff), 0x13, 0x88,
                            UInt8(udpLength >> 8), UInt8(udpLength & 0xff), 0, 0]
        udp += (0..<(udpLength - 8)).map { UInt8(truncatingIfNeeded: $0) }
        if partialChecksum {
            let pseudo = onesComplementSum(pseudoHeader(udpLength: udpLength)[...])
            udp[6] = UInt8(pseudo >> 8)
            udp[7] = UInt8(pseudo & 0xff)
        }
        let frame = destination + source + [0x08, 0x00] + ip + udp
        return Array(frame.prefix(size))
    }

    static func pseudoHeader(udpLength: Int) -> [UInt8] {
        [198, 18, 0, 1, 198, 18, 0, 2, 0, 17, UInt8(udpLength >> 8), UInt8(udpLength & 0xff)]
    }

    /// The UDP checksum check of a `udp(...)` frame (RFC 768): 0 when the checksum is right.
    public static func udpChecksum(of frame: [UInt8]) -> UInt16 {
        let udp = frame[34...]
        return ~onesComplementSum(pseudoHeader(udpLength: udp.count)[...] + udp)
    }

    /// The bytes of `frame` in `batch`, its segments joined.
    public static func bytes(of batch: PacketBatch, frame: Int) -> [UInt8] {
        var out: [UInt8] = []
        let first = Int(batch.firstSegment[frame])
        for s in first..<first + Int(batch.segments[frame]) {
            out += UnsafeRawBufferPointer(start: batch.segmentBase[s], count: Int(batch.segmentLength[s]))
        }
        return out
    }
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
        batch.firstSegment[i] = UInt32(batch.segmentCount)
        for (start, end) in zip(bounds, bounds.dropFirst()) {
            let block = UnsafeMutableRawPointer.allocate(byteCount: max(1, end - start), alignment: 1)
            blocks.append(block)
            frame[start..<end].withUnsafeBytes { block.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            batch.segmentBase[batch.segmentCount] = block
            batch.segmentLength[batch.segmentCount] = UInt32(end - start)
            batch.segmentCount += 1
        }
        batch.segments[i] = UInt16(bounds.count - 1)
        batch.length[i] = UInt32(frame.count)
        batch.token[i] = UInt32(i)
        batch.header(i).initializeMemory(as: UInt8.self, repeating: 0, count: PacketBatch.headerSize)
        batch.count = i + 1
    }
}
