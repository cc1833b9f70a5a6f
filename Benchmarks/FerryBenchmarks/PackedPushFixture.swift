import Packets
import Platform
import Virtio

/// One guest's packed RX ring (virtio 1.2 §2.8) of `queueSize` descriptors,
/// re-offered `burst` 2048-byte single buffers at a time, and `burst` frames
/// of one length to push into it; the driver's side is BenchPackedDriver.
/// Every burst starts on a line of four descriptors (256 is a multiple of 4), so
/// push takes the four-frame fast path (PackedVirtqueue+BatchedPush.swift) throughout.
final class PackedPushFixture {
    static let rxBufferSize = 2048

    let driver: BenchPackedDriver
    let queue = PackedVirtqueue(index: 0)
    let batch = PacketBatch(capacity: burst)
    let counters = QueueCounters()
    let frames: UnsafeMutableRawPointer
    let bufferArea: UInt64
    var logFile: SharedMemory? = nil

    init(frameLength: Int, logging: Bool) throws {
        // Ring at +0x80000 (16 KiB), the event structures after it, buffers from +0x100000.
        driver = try BenchPackedDriver(ringOffset: 0x80000)
        bufferArea = BenchPackedDriver.base + 0x10_0000
        var c = driver.configuration
        c.headerLength = 12
        c.mergeableBuffers = true
        queue.configuration = c
        if logging {
            let bytes = (BenchPackedDriver.base + (8 << 20)) / DirtyPageLog.pageSize / 8
            let file = try SharedMemory(length: Int(bytes + 4095) / 4096 * 4096, name: "ferry-bench-packed-log")
            queue.configuration.setDirtyLog(try DirtyPageLog(fd: file.fd.rawValue, size: bytes, offset: 0), usedRing: nil)
            logFile = file
        }
        try queue.start(memory: driver.ram.memory)
        let stride = (frameLength + 63) / 64 * 64
        frames = .allocate(byteCount: stride * burst, alignment: 64)
        for i in 0..<burst {
            BurstFixture.writeEthernet(frames + stride * i, length: frameLength, seed: UInt8(truncatingIfNeeded: i))
            batch.append(base: frames + stride * i, length: UInt32(frameLength), token: UInt32(i))
        }
    }

    deinit { frames.deallocate() }

    /// The driver's work between bursts: `burst` device-writable buffers made
    /// available at its position, each one's flags last.
    @inline(__always)
    func refill() {
        for i in 0..<burst {
            let (d, available) = driver.take()
            BenchPackedDriver.describe(d, address: bufferArea + UInt64(Self.rxBufferSize * i), length: Self.rxBufferSize, id: i)
            BenchPackedDriver.publish(d, flags: BenchPackedDriver.write | available)
        }
    }

    /// Outside the measured region: every frame went in.
    func checkPushed() {
        precondition(queue.isRunning && queue.postedBuffers == 0,
                     "push left \(queue.postedBuffers) buffers, error \(String(describing: queue.error))")
    }
}
