import Packets
import Platform
import Virtio

/// One guest's packed TX ring (virtio 1.2 §2.8) of `queueSize` descriptors,
/// re-offered `burst` frames (12-byte header, 64-byte frame) at a time: single
/// buffers, as DPDK's virtio-user sends them, or (`chained`) chains of two
/// descriptors, the header and the frame; the driver's side is BenchPackedDriver.
/// `inOrder`: VIRTIO_F_IN_ORDER taken, so a release writes one used descriptor
/// for the burst (`releaseInOrder`) instead of one per chain (`publishUsed`).
final class PackedPullFixture {
    static let frameLength = 64
    static let header = 12

    let driver: BenchPackedDriver
    let queue = PackedVirtqueue(index: 1)
    let batch = PacketBatch(capacity: burst)
    let counters = QueueCounters()
    let bufferArea: UInt64
    let chained: Bool

    init(inOrder: Bool, chained: Bool = false) throws {
        self.chained = chained
        // Ring at the start of RAM (16 KiB), the event structures after it, buffers from +0x20000, 128 bytes apart.
        driver = try BenchPackedDriver(ringOffset: 0)
        bufferArea = BenchPackedDriver.base + 0x20000
        for i in 0..<burst {
            let buffer = driver.pointer(bufferArea + UInt64(128 * i))
            buffer.initializeMemory(as: UInt8.self, repeating: 0, count: Self.header)
            BurstFixture.writeEthernet(buffer + Self.header, length: Self.frameLength, seed: UInt8(truncatingIfNeeded: i))
        }
        var c = driver.configuration
        c.headerLength = Self.header
        c.inOrder = inOrder
        queue.configuration = c
        try queue.start(memory: driver.ram.memory)
    }

    /// The driver's work between bursts: the `burst` buffers made available
    /// at its position, each head's flags last.
    @inline(__always)
    func refill() {
        for i in 0..<burst {
            let buffer = bufferArea + UInt64(128 * i)
            let (head, headAvailable) = driver.take()
            if chained {
                // The frame's descriptor (the chain's id is on its last), then the header's, flags last.
                let (d, available) = driver.take()
                BenchPackedDriver.describe(d, address: buffer + UInt64(Self.header), length: Self.frameLength, id: i)
                BenchPackedDriver.publish(d, flags: available)
                BenchPackedDriver.describe(head, address: buffer, length: Self.header, id: i)
                BenchPackedDriver.publish(head, flags: headAvailable | BenchPackedDriver.next)
            } else {
                BenchPackedDriver.describe(head, address: buffer, length: Self.header + Self.frameLength, id: i)
                BenchPackedDriver.publish(head, flags: headAvailable)
            }
        }
    }

    /// Outside the measured region: the burst must have done the real work.
    func check(pulled n: Int) {
        precondition(n == burst && batch.count == burst && queue.isRunning && queue.postedBuffers == 0,
                     "pull took \(n) frames, batch \(batch.count), error \(String(describing: queue.error))")
    }
}
