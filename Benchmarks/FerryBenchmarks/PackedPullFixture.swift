import CFerry
import Packets
import Platform
import Virtio

/// One guest's packed TX ring (virtio 1.2 §2.8) of `queueSize` descriptors,
/// re-offered `burst` frames (12-byte header, 64-byte frame) at a time: single
/// buffers, as DPDK's virtio-user sends them, or (`chained`) chains of two
/// descriptors, the header and the frame; after Tests/TestSupport/MockPackedDriver.swift.
/// `inOrder`: VIRTIO_F_IN_ORDER taken, so a release writes one used descriptor
/// for the burst (`releaseInOrder`) instead of one per chain (`publishUsed`).
final class PackedPullFixture {
    static let frameLength = 64
    static let header = 12
    static let avail: UInt16 = 1 << 7
    static let used: UInt16 = 1 << 15

    let ram: BenchRAM
    let queue = PackedVirtqueue(index: 1)
    let batch = PacketBatch(capacity: burst)
    let counters = QueueCounters()
    let ring: UnsafeMutableRawPointer
    let bufferArea: UInt64
    let chained: Bool
    /// The driver's next position to fill and its wrap counter there.
    var position: UInt16 = 0
    var wrap = true

    init(inOrder: Bool, chained: Bool = false) throws {
        self.chained = chained
        let base: UInt64 = 0x4000_0000
        ram = try BenchRAM(size: 8 << 20, regions: [
            GuestMemoryRegionInfo(guestPhysicalAddress: base, size: 8 << 20,
                                  frontEndAddress: 0x7f00_0000_0000, mmapOffset: 0),
        ])
        // Ring at base (16 KiB), the event structures after it, buffers from +0x20000, 128 bytes apart.
        let driverEvents = base + 16 * UInt64(queueSize)
        bufferArea = base + 0x20000
        ring = ram.pointer(base)
        ring.initializeMemory(as: UInt8.self, repeating: 0, count: 16 * Int(queueSize) + 8)
        // The driver wants no calls (DPDK's virtio-user polls its used descriptors).
        ram.pointer(driverEvents + 2).storeBytes(of: UInt16(1), as: UInt16.self)
        for i in 0..<burst {
            let buffer = ram.pointer(bufferArea + UInt64(128 * i))
            buffer.initializeMemory(as: UInt8.self, repeating: 0, count: Self.header)
            BurstFixture.writeEthernet(buffer + Self.header, length: Self.frameLength, seed: UInt8(truncatingIfNeeded: i))
        }
        var c = RingConfiguration()
        c.size = queueSize
        c.descAddress = ram.frontEndAddress(base)
        c.availAddress = ram.frontEndAddress(driverEvents)
        c.usedAddress = ram.frontEndAddress(driverEvents + 4)
        c.headerLength = Self.header
        c.inOrder = inOrder
        queue.configuration = c
        try queue.start(memory: ram.memory)
    }

    /// The driver's work between bursts, with raw stores and no allocation:
    /// the `burst` buffers made available at its position, each head's flags last.
    @inline(__always)
    func refill() {
        for i in 0..<burst {
            let buffer = bufferArea + UInt64(128 * i)
            let head = ring + Int(position) * 16
            let headFlags = wrap ? Self.avail : Self.used   // available in this lap
            advance()
            if chained {
                // The frame's descriptor (the chain's id is on its last), then the header's, flags last.
                let d = ring + Int(position) * 16
                d.storeBytes(of: buffer + UInt64(Self.header), as: UInt64.self)
                d.storeBytes(of: UInt32(Self.frameLength), toByteOffset: 8, as: UInt32.self)
                d.storeBytes(of: UInt16(i), toByteOffset: 12, as: UInt16.self)
                ferry_store_release_u16(d + 14, wrap ? Self.avail : Self.used)
                advance()
                head.storeBytes(of: buffer, as: UInt64.self)
                head.storeBytes(of: UInt32(Self.header), toByteOffset: 8, as: UInt32.self)
                ferry_store_release_u16(head + 14, headFlags | 1)   // NEXT
            } else {
                head.storeBytes(of: buffer, as: UInt64.self)
                head.storeBytes(of: UInt32(Self.header + Self.frameLength), toByteOffset: 8, as: UInt32.self)
                head.storeBytes(of: UInt16(i), toByteOffset: 12, as: UInt16.self)
                ferry_store_release_u16(head + 14, headFlags)
            }
        }
    }

    @inline(__always)
    private func advance() {
        position += 1
        if position == queueSize {
            position = 0
            wrap.toggle()
        }
    }

    /// Outside the measured region: the burst must have done the real work.
    func check(pulled n: Int) {
        precondition(n == burst && batch.count == burst && queue.isRunning && queue.postedBuffers == 0,
                     "pull took \(n) frames, batch \(batch.count), error \(String(describing: queue.error))")
    }
}
