import CFerry
import Platform
import Virtio

/// The driver's side of one guest's packed ring (virtio 1.2 §2.8) for the
/// packed benchmarks (PackedPullFixture, PackedPushFixture): 8 MiB of guest
/// RAM, a ring of `queueSize` descriptors at `ringOffset` in it with the event
/// structures right after, and the driver's position in the ring; after
/// Tests/TestSupport/MockPackedDriver.swift, which the benchmarks cannot link.
/// The driver wants no calls, as DPDK's virtio-user (it polls) and a guest
/// busy in NAPI poll. Offering is raw stores without allocation: it runs
/// between measured bursts.
final class BenchPackedDriver {
    /// Descriptor flags as the driver writes them (the device's names for them are internal to Virtio).
    static let next: UInt16 = 1          // VIRTQ_DESC_F_NEXT
    static let write: UInt16 = 2         // VIRTQ_DESC_F_WRITE
    static let avail: UInt16 = 1 << 7    // VIRTQ_DESC_F_AVAIL
    static let used: UInt16 = 1 << 15    // VIRTQ_DESC_F_USED
    /// Where the guest's RAM starts, guest-physical.
    static let base: UInt64 = 0x4000_0000

    let ram: BenchRAM
    let ring: UnsafeMutableRawPointer
    /// SET_VRING_NUM and SET_VRING_ADDR's part of a queue's configuration; the
    /// fixture adds its features.
    let configuration: RingConfiguration
    /// The driver's next position to fill and its wrap counter there.
    private(set) var position: UInt16 = 0
    private(set) var wrap = true

    init(ringOffset: UInt64) throws {
        ram = try BenchRAM(size: 8 << 20, regions: [
            GuestMemoryRegionInfo(guestPhysicalAddress: Self.base, size: 8 << 20,
                                  frontEndAddress: 0x7f00_0000_0000, mmapOffset: 0),
        ])
        let ringGPA = Self.base + ringOffset
        let driverEvents = ringGPA + 16 * UInt64(queueSize)
        ring = ram.pointer(ringGPA)
        ring.initializeMemory(as: UInt8.self, repeating: 0, count: 16 * Int(queueSize) + 8)
        ram.pointer(driverEvents + 2).storeBytes(of: UInt16(1), as: UInt16.self)   // RING_EVENT_FLAGS_DISABLE
        var c = RingConfiguration()
        c.size = queueSize
        c.descAddress = ram.frontEndAddress(ringGPA)
        c.availAddress = ram.frontEndAddress(driverEvents)
        c.usedAddress = ram.frontEndAddress(driverEvents + 4)
        configuration = c
    }

    /// The driver's pointer to the guest-physical `gpa`.
    func pointer(_ gpa: UInt64) -> UnsafeMutableRawPointer { ram.pointer(gpa) }

    /// The descriptor at the driver's position, and the flags that make it
    /// available in this lap; the driver moves on. The caller stores the
    /// descriptor's flags last (a head's after the rest of its chain).
    @inline(__always)
    func take() -> (descriptor: UnsafeMutableRawPointer, available: UInt16) {
        let taken = (ring + Int(position) * 16, wrap ? Self.avail : Self.used)
        position += 1
        if position == queueSize {
            position = 0
            wrap.toggle()
        }
        return taken
    }

    /// Writes a descriptor's address, length and buffer id; not its flags.
    @inline(__always)
    static func describe(_ d: UnsafeMutableRawPointer, address: UInt64, length: Int, id: Int) {
        d.storeBytes(of: address, as: UInt64.self)
        d.storeBytes(of: UInt32(length), toByteOffset: 8, as: UInt32.self)
        d.storeBytes(of: UInt16(id), toByteOffset: 12, as: UInt16.self)
    }

    /// Makes a described descriptor available: its flags, with release, after its other fields.
    @inline(__always)
    static func publish(_ d: UnsafeMutableRawPointer, flags: UInt16) {
        ferry_store_release_u16(d + 14, flags)
    }
}
