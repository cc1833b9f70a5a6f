import Virtio

/// A ring layout as the unit tests drive it: the queue Ferry runs and the
/// mock driver that fills its ring.
public protocol MockDrivenQueue: VirtqueueControl {
    associatedtype Driver: MockDriverRing
    init(index: Int)
}

extension SplitVirtqueue: MockDrivenQueue {
    public typealias Driver = MockSplitRing
}

extension PackedVirtqueue: MockDrivenQueue {
    public typealias Driver = MockPackedRing
}

extension MockDrivenQueue {
    /// A driver's ring of `size` at the start of `ram` (one region by default),
    /// its buffers from `buffers` (by default the rest of the region), and a
    /// queue configured for it, as SET_VRING_* and SET_FEATURES would, and started.
    public static func started(_ ram: GuestRAM? = nil, size: UInt16 = 256, eventIndex: Bool = false,
                               headerLength: Int = 12, mergeable: Bool = false, buffers: Range<UInt64>? = nil,
                               guestChecksum: Bool = true) throws -> (Driver, Self)
    {
        let ram = try ram ?? GuestRAM.oneRegion()
        let ring = Driver(ram: ram, size: size, at: nil, buffers: buffers)
        let queue = Self(index: 0)
        ring.configure(queue, eventIndex: eventIndex, headerLength: headerLength, mergeableBuffers: mergeable,
                       guestChecksum: guestChecksum)
        try queue.start(memory: ram.makeGuestMemory())
        return (ring, queue)
    }
}
