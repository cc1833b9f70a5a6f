import Glibc
import Packets

/// One queue's ring in the layout its driver negotiated: split (virtio 1.2
/// §2.7) or packed (VIRTIO_F_RING_PACKED, §2.8). Ports and workers use it
/// alike. An enum rather than a protocol existential: each call (once per
/// burst) is one switch, and the code behind it is each layout's own,
/// specialised and inlined; nothing is dispatched per frame.
public enum Virtqueue {
    case split(SplitVirtqueue)
    case packed(PackedVirtqueue)

    @inlinable
    public var index: Int {
        switch self {
        case .split(let q): q.index
        case .packed(let q): q.index
        }
    }

    @inlinable
    public var isRunning: Bool {
        switch self {
        case .split(let q): q.isRunning
        case .packed(let q): q.isRunning
        }
    }

    @inlinable
    public var error: VirtqueueError? {
        switch self {
        case .split(let q): q.error
        case .packed(let q): q.error
        }
    }

    @inlinable
    public var kickFD: Int32 {
        switch self {
        case .split(let q): q.kickFD
        case .packed(let q): q.kickFD
        }
    }

    @inlinable
    public var headerLength: Int {
        switch self {
        case .split(let q): q.configuration.headerLength
        case .packed(let q): q.configuration.headerLength
        }
    }

    @inlinable
    public var memoryTable: GuestMemory? {
        switch self {
        case .split(let q): q.memoryTable
        case .packed(let q): q.memoryTable
        }
    }

    @inlinable
    public func pull(into batch: PacketBatch, counters: QueueCounters) -> Int {
        switch self {
        case .split(let q): q.pull(into: batch, counters: counters)
        case .packed(let q): q.pull(into: batch, counters: counters)
        }
    }

    @inlinable
    public func release() {
        switch self {
        case .split(let q): q.release()
        case .packed(let q): q.release()
        }
    }

    @inlinable
    public func push(from batch: PacketBatch, counters: QueueCounters) {
        switch self {
        case .split(let q): q.push(from: batch, counters: counters)
        case .packed(let q): q.push(from: batch, counters: counters)
        }
    }

    /// As `push`, GSO frames the driver did not negotiate cut straight into
    /// its chains (`ReceiveChainSink`, `PackedReceiveChainSink`).
    @inlinable
    public func push(from batch: PacketBatch, counters: QueueCounters, segmenter: SoftwareSegmenter,
                     acceptance: OffloadAcceptance) {
        switch self {
        case .split(let q): q.push(from: batch, counters: counters, segmenter: segmenter, acceptance: acceptance)
        case .packed(let q): q.push(from: batch, counters: counters, segmenter: segmenter, acceptance: acceptance)
        }
    }

    /// Chains the driver has posted and the device not taken, counted up to `limit`.
    @inlinable
    public func postedBuffers(atMost limit: Int) -> Int {
        switch self {
        case .split(let q): min(q.postedBuffers, limit)
        case .packed(let q): q.postedBuffers(atMost: limit)
        }
    }

    @inlinable
    public func nextChain(into pieces: UnsafeMutablePointer<iovec>, capacity: Int, want: Int, memory: GuestMemory)
        -> ReceiveChain
    {
        switch self {
        case .split(let q): q.nextChain(into: pieces, capacity: capacity, want: want, memory: memory)
        case .packed(let q): q.nextChain(into: pieces, capacity: capacity, want: want, memory: memory)
        }
    }

    /// The dirty log a burst writing into this ring marks while a live migration runs, nil otherwise.
    @inlinable
    public var dirtyPageLog: DirtyPageLog? {
        switch self {
        case .split(let q): q.dirtyPageLog
        case .packed(let q): q.dirtyPageLog
        }
    }

    /// As `commitChain(head:pieces:count:length:prefix:prefixLength:)`, telling
    /// `writes` what was written into the chain.
    @inlinable
    public func commitChain<W: GuestWrites>(head: UInt16, pieces: UnsafePointer<iovec>, count: Int, length: Int,
                                            prefix: UnsafeMutableRawPointer, prefixLength: Int, writes: W) {
        switch self {
        case .split(let q):
            q.commitChain(head: head, pieces: pieces, count: count, length: length, prefix: prefix,
                          prefixLength: prefixLength, writes: writes)
        case .packed(let q):
            q.commitChain(head: head, pieces: pieces, count: count, length: length, prefix: prefix,
                          prefixLength: prefixLength, writes: writes)
        }
    }

    @inlinable
    public func commitChain(head: UInt16, pieces: UnsafePointer<iovec>, count: Int, length: Int,
                            prefix: UnsafeMutableRawPointer, prefixLength: Int) {
        switch self {
        case .split(let q):
            q.commitChain(head: head, pieces: pieces, count: count, length: length, prefix: prefix,
                          prefixLength: prefixLength)
        case .packed(let q):
            q.commitChain(head: head, pieces: pieces, count: count, length: length, prefix: prefix,
                          prefixLength: prefixLength)
        }
    }

    @inlinable
    public func publishCommitted() {
        switch self {
        case .split(let q): q.publishCommitted()
        case .packed(let q): q.publishCommitted()
        }
    }

    public func enableNotifications() -> Bool {
        switch self {
        case .split(let q): q.enableNotifications()
        case .packed(let q): q.enableNotifications()
        }
    }

    public func disableNotifications() {
        switch self {
        case .split(let q): q.disableNotifications()
        case .packed(let q): q.disableNotifications()
        }
    }
}
