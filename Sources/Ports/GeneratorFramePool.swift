import Model
import Packets

/// Every frame a generator sends, built once: flow `k % flows` and the size pattern's
/// entry `(k / flows) % sizes` for slot `k`, repeated until there are at least as many
/// slots as a burst takes, so a frame is rewritten (its stamp) only after the burst that
/// sent it was copied on. Sending a frame writes its sequence number and send time and
/// nothing else; the IPv4 checksum covers no stamp and the UDP checksum is 0 (none).
@usableFromInline
final class GeneratorFramePool {
    @usableFromInline let slotCount: Int
    /// Where each slot's frame starts in `memory`, its length and its flow.
    @usableFromInline let frames: UnsafeMutablePointer<UnsafeMutableRawPointer>
    @usableFromInline let lengths: UnsafeMutablePointer<UInt32>
    @usableFromInline let flows: UnsafeMutablePointer<UInt16>
    let memory: UnsafeMutableRawPointer
    let memoryBytes: Int
    /// The mean frame size over all slots: the pattern's, since slots repeat it whole.
    let meanFrameSize: Double

    init(_ spec: GeneratorSpec, minimumSlots: Int) {
        let pattern = spec.sizes.pattern
        let cycle = spec.flows * pattern.count
        slotCount = cycle * max(1, (minimumSlots + cycle - 1) / cycle)
        frames = .allocate(capacity: slotCount)
        lengths = .allocate(capacity: slotCount)
        flows = .allocate(capacity: slotCount)
        var offsets: [Int] = []
        var total = 0
        for k in 0..<slotCount {
            offsets.append(total)
            total += (pattern[(k / spec.flows) % pattern.count] + 63) & ~63
        }
        memoryBytes = max(total, 64)
        // SAFETY: the fill covers exactly the memoryBytes just allocated.
        memory = .allocate(byteCount: memoryBytes, alignment: 64)
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: memoryBytes)
        var bytes = 0
        for k in 0..<slotCount {
            let flow = k % spec.flows
            let size = pattern[(k / spec.flows) % pattern.count]
            let frame = Self.frame(spec, flow: flow, size: size)
            // SAFETY: offsets[k] + size <= total <= memoryBytes: each slot was given its size rounded up.
            let base = memory + offsets[k]
            frame.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: size) }
            frames[k] = base
            lengths[k] = UInt32(size)
            flows[k] = UInt16(flow)
            bytes += size
        }
        meanFrameSize = Double(bytes) / Double(slotCount)
    }

    deinit {
        frames.deallocate()
        lengths.deallocate()
        flows.deallocate()
        memory.deallocate()
    }

    /// Ethernet (+ 802.1Q) + IPv4 + UDP of flow `flow`, zero-padded to `size`, with the
    /// stamp's magic and flow in place when the generator stamps.
    static func frame(_ spec: GeneratorSpec, flow: Int, size: Int) -> [UInt8] {
        var source = spec.source.array
        // Flow k's source is `source` + k × 256: the last byte stays as given, so the flows'
        // sources never take the default destination (02:00:00:00:00:02 against ...:01).
        var carry = flow
        for i in (0..<5).reversed() where carry > 0 {
            let v = Int(source[i]) + carry
            source[i] = UInt8(v & 0xff)
            carry = v >> 8
        }
        var f = spec.destination.array + source
        if let tag = spec.tag { f += [0x81, 0x00, UInt8(tag >> 8), UInt8(tag & 0xff)] }
        f += [0x08, 0x00]
        let ipLength = max(LabStamp.ipv4HeaderSize + LabStamp.udpHeaderSize, size - f.count)
        let sourceIP = 0xC612_0001 + UInt32(flow)      // 198.18.0.1 + flow
        let destinationIP = 0xC613_0001 + UInt32(flow)  // 198.19.0.1 + flow
        var ip: [UInt8] = [0x45, 0, UInt8(ipLength >> 8), UInt8(ipLength & 0xff), 0, 0, 0x40, 0, 64, 17, 0, 0]
        ip += bigEndian(sourceIP) + bigEndian(destinationIP)
        var sum: UInt32 = 0
        for i in stride(from: 0, to: 20, by: 2) { sum += UInt32(ip[i]) << 8 | UInt32(ip[i + 1]) }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        let checksum = ~UInt16(sum)
        ip[10] = UInt8(checksum >> 8)
        ip[11] = UInt8(checksum & 0xff)
        let udpLength = ipLength - LabStamp.ipv4HeaderSize
        let sourcePort = 1024 + flow
        let udp: [UInt8] = [UInt8(sourcePort >> 8), UInt8(sourcePort & 0xff), 0x04, 0x01,
                            UInt8(udpLength >> 8), UInt8(udpLength & 0xff), 0, 0]
        f += ip + udp
        if spec.stamped {
            f += [UInt8(LabStamp.magic >> 8), UInt8(LabStamp.magic & 0xff), UInt8(flow >> 8), UInt8(flow & 0xff)]
        }
        if f.count < size { f += [UInt8](repeating: 0, count: size - f.count) }
        return Array(f.prefix(size))
    }

    private static func bigEndian(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)]
    }
}
