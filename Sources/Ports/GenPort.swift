import Model
import Packets
import Platform
import Synchronization

/// A traffic generator: every frame it emits points at one prebuilt template
/// (an IPv4/UDP frame between two benchmarking addresses), so generating costs
/// nothing but the destination's copy. Stops after `count` frames, or never.
public final class GenPort {
    public let frameSize: Int
    public let limit: UInt64?
    /// Milliseconds to wait, once the destination first has room, before the
    /// first frame: front-ends such as DPDK's virtio PMD flush their RX rings
    /// while they start, and frames sent in that window never reach them.
    public let delayMilliseconds: Int
    @usableFromInline var startAt: Double = 0
    @usableFromInline var started = false
    public let counters = QueueCounters()
    @usableFromInline let template: UnsafeMutableRawPointer
    /// Frames emitted so far. The worker that pulls is the only writer; the
    /// control thread reads it (`isFinished`, `ferry ctl show ports`), hence relaxed
    /// atomics, which cost the worker what plain loads and stores do.
    @usableFromInline let emitted = Atomic<UInt64>(0)

    public static let sizes = PortLimits.genFrameSizes

    public init(destination: MACAddress, source: MACAddress, frameSize: Int, count: UInt64?, delayMilliseconds: Int = 0) {
        precondition(Self.sizes.contains(frameSize))
        self.frameSize = frameSize
        self.limit = count
        self.delayMilliseconds = delayMilliseconds
        self.started = delayMilliseconds == 0
        template = .allocate(byteCount: frameSize, alignment: 64)
        template.initializeMemory(as: UInt8.self, repeating: 0, count: frameSize)
        let frame = GenPort.udpFrame(destination: destination, source: source, size: frameSize)
        frame.withUnsafeBytes { template.copyMemory(from: $0.baseAddress!, byteCount: frameSize) }
    }

    deinit { template.deallocate() }

    public var queueCount: Int { 1 }
    public var isFinished: Bool { limit.map { emitted.load(ordering: .relaxed) >= $0 } ?? false }

    @inlinable
    public func pull(queue _: Int, into batch: PacketBatch) -> Int {
        if !started && !delayElapsed() { return 0 }
        var n = batch.room
        let sent = emitted.load(ordering: .relaxed)
        if let limit {
            let left = limit &- sent
            if left < UInt64(n) { n = Int(left) }
        }
        if n > batch.freeSegments { n = batch.freeSegments }
        guard n > 0 else { return 0 }
        let len = UInt32(truncatingIfNeeded: frameSize)
        var i = 0
        while i < n {
            batch.append(base: template, length: len, token: 0)
            i &+= 1
        }
        emitted.store(sent &+ UInt64(n), ordering: .relaxed)
        counters.received(packets: n, bytes: UInt64(n) &* UInt64(frameSize))
        return n
    }

    @usableFromInline
    func delayElapsed() -> Bool {
        let now = MonotonicClock.now(coarse: true)
        if startAt == 0 { startAt = now + Double(delayMilliseconds) / 1000 }
        started = now >= startAt
        return started
    }

    @inlinable public func release(queue _: Int) {}

    /// Frames sent to a generator go nowhere; they are counted as delivered.
    @inlinable
    public func push(queue _: Int, from batch: PacketBatch) {
        counters.sent(packets: batch.count, bytes: batch.totalBytes)
    }

    /// Ethernet + IPv4 + UDP from 198.18.0.1 to 198.18.0.2 (RFC 2544 benchmarking range), zero-padded.
    static func udpFrame(destination: MACAddress, source: MACAddress, size: Int) -> [UInt8] {
        var f = destination.array + source.array + [0x08, 0x00]
        let ipLength = max(28, size - 14)
        var ip: [UInt8] = [0x45, 0, UInt8(ipLength >> 8), UInt8(ipLength & 0xff), 0, 0, 0x40, 0, 64, 17, 0, 0,
                           198, 18, 0, 1, 198, 18, 0, 2]
        var sum: UInt32 = 0
        for i in stride(from: 0, to: 20, by: 2) { sum += UInt32(ip[i]) << 8 | UInt32(ip[i + 1]) }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        let checksum = ~UInt16(sum)
        ip[10] = UInt8(checksum >> 8)
        ip[11] = UInt8(checksum & 0xff)
        let udpLength = ipLength - 20
        let udp: [UInt8] = [0x04, 0x00, 0x04, 0x01, UInt8(udpLength >> 8), UInt8(udpLength & 0xff), 0, 0]
        f += ip + udp
        if f.count < size { f += [UInt8](repeating: 0, count: size - f.count) }
        return Array(f.prefix(size))
    }
}
