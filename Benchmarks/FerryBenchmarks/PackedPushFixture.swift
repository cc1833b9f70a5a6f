import CFerry
import Packets
import Platform
import Virtio

/// One guest's packed RX ring (virtio 1.2 §2.8) of `queueSize` descriptors,
/// re-offered `burst` 2048-byte single buffers at a time, and `burst` frames
/// of one length to push into it; after Tests/TestSupport/MockPackedDriver.swift.
/// Every burst starts on a line of four descriptors (256 is a multiple of 4), so
/// push takes the four-frame fast path (PackedVirtqueue+BatchedPush.swift) throughout.
final class PackedPushFixture {
    static let rxBufferSize = 2048
    static let avail: UInt16 = 1 << 7
    static let used: UInt16 = 1 << 15

    let ram: BenchRAM
    let queue = PackedVirtqueue(index: 0)
    let batch = PacketBatch(capacity: burst)
    let counters = QueueCounters()
    let ring: UnsafeMutableRawPointer
    let frames: UnsafeMutableRawPointer
    let bufferArea: UInt64
    /// The driver's next position to fill and its wrap counter there.
    var position: UInt16 = 0
    var wrap = true
    var logFile: SharedMemory? = nil

    init(frameLength: Int, logging: Bool) throws {
        let base: UInt64 = 0x4000_0000
        ram = try BenchRAM(size: 8 << 20, regions: [
            GuestMemoryRegionInfo(guestPhysicalAddress: base, size: 8 << 20,
                                  frontEndAddress: 0x7f00_0000_0000, mmapOffset: 0),
        ])
        // Ring at +0x80000 (16 KiB), the event structures after it, buffers from +0x100000.
        let ringGPA = base + 0x80000
        let driverEvents = ringGPA + 16 * UInt64(queueSize)
        bufferArea = base + 0x10_0000
        ring = ram.pointer(ringGPA)
        ring.initializeMemory(as: UInt8.self, repeating: 0, count: 16 * Int(queueSize) + 8)
        // The driver wants no calls (a guest busy in NAPI poll).
        ram.pointer(driverEvents + 2).storeBytes(of: UInt16(1), as: UInt16.self)
        var c = RingConfiguration()
        c.size = queueSize
        c.descAddress = ram.frontEndAddress(ringGPA)
        c.availAddress = ram.frontEndAddress(driverEvents)
        c.usedAddress = ram.frontEndAddress(driverEvents + 4)
        c.headerLength = 12
        c.mergeableBuffers = true
        queue.configuration = c
        if logging {
            let bytes = (base + (8 << 20)) / DirtyPageLog.pageSize / 8
            let file = try SharedMemory(length: Int(bytes + 4095) / 4096 * 4096, name: "ferry-bench-packed-log")
            queue.configuration.setDirtyLog(try DirtyPageLog(fd: file.fd.rawValue, size: bytes, offset: 0), usedRing: nil)
            logFile = file
        }
        try queue.start(memory: ram.memory)
        let stride = (frameLength + 63) / 64 * 64
        frames = .allocate(byteCount: stride * burst, alignment: 64)
        for i in 0..<burst {
            BurstFixture.writeEthernet(frames + stride * i, length: frameLength, seed: UInt8(truncatingIfNeeded: i))
            batch.append(base: frames + stride * i, length: UInt32(frameLength), token: UInt32(i))
        }
    }

    deinit { frames.deallocate() }

    /// The driver's work between bursts, with raw stores and no allocation:
    /// `burst` buffers made available at its position, each head's flags last.
    @inline(__always)
    func refill() {
        for i in 0..<burst {
            let d = ring + Int(position) * 16
            d.storeBytes(of: bufferArea + UInt64(Self.rxBufferSize * i), as: UInt64.self)
            d.storeBytes(of: UInt32(Self.rxBufferSize), toByteOffset: 8, as: UInt32.self)
            d.storeBytes(of: UInt16(i), toByteOffset: 12, as: UInt16.self)
            ferry_store_release_u16(d + 14, 2 | (wrap ? Self.avail : Self.used))   // WRITE, available in this lap
            position += 1
            if position == queueSize {
                position = 0
                wrap.toggle()
            }
        }
    }

    /// Outside the measured region: every frame went in.
    func checkPushed() {
        precondition(queue.isRunning && queue.postedBuffers == 0,
                     "push left \(queue.postedBuffers) buffers, error \(String(describing: queue.error))")
    }
}
