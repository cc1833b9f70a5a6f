import CFerry

/// One of an AF_XDP socket's four rings, as the kernel maps it: a power-of-two
/// array of entries and two free-running 32-bit indexes, each written by one
/// side only. Fill and TX rings are produced by Ferry and consumed by the
/// kernel; RX and completion rings the other way round.
///
/// The view holds no cached copy of the other side's index: each burst reads
/// it once with acquire ordering, which is one cache line per burst, and keeps
/// the view a plain value the hot path can copy without reference counting.
/// Our own index is read relaxed: only we ever write it.
public struct XDPRing: @unchecked Sendable {
    public let producer: UnsafeMutablePointer<UInt32>
    public let consumer: UnsafeMutablePointer<UInt32>
    public let flags: UnsafeMutablePointer<UInt32>
    public let entries: UnsafeMutableRawPointer
    public let size: UInt32
    public let mask: UInt32

    init(base: UnsafeMutableRawPointer, offsets: xdp_ring_offset, size: UInt32) {
        // SAFETY: XDPSocket mapped desc + size * entry bytes at base with the offsets the kernel gave
        // (XDP_MMAP_OFFSETS, length checked): producer, consumer and flags are the kernel's u32 words
        // before desc, and the entries start at desc.
        producer = (base + Int(offsets.producer)).assumingMemoryBound(to: UInt32.self)
        consumer = (base + Int(offsets.consumer)).assumingMemoryBound(to: UInt32.self)
        flags = (base + Int(offsets.flags)).assumingMemoryBound(to: UInt32.self)
        entries = base + Int(offsets.desc)
        self.size = size
        mask = size &- 1
    }

    // MARK: rings Ferry consumes (RX, completion)

    /// Entries the kernel has produced that we have not consumed.
    @inlinable
    public func readable() -> UInt32 {
        // SAFETY: producer and consumer point at the kernel's u32 index words in the mapping init was
        // given, alive as long as the socket that owns the mapping (XDPSocket keeps both).
        ferry_load_acquire_u32(producer) &- ferry_load_relaxed_u32(consumer)
    }

    /// Our consumer index: the next entry to read is `readPosition + i`.
    // SAFETY: as in `readable`: our index word in the live mapping.
    @inlinable
    public var readPosition: UInt32 { ferry_load_relaxed_u32(consumer) }

    /// Hands `count` consumed entries back; their slots may be overwritten after this.
    @inlinable
    public func consume(_ count: UInt32) {
        // SAFETY: as in `readable`: our index word in the live mapping.
        ferry_store_release_u32(consumer, ferry_load_relaxed_u32(consumer) &+ count)
    }

    // MARK: rings Ferry produces (fill, TX)

    /// Slots we may fill before the kernel has consumed more.
    @inlinable
    public func writable() -> UInt32 {
        // SAFETY: as in `readable`: the two index words in the live mapping.
        size &- (ferry_load_relaxed_u32(producer) &- ferry_load_acquire_u32(consumer))
    }

    /// Our producer index: the next entry to write is `writePosition + i`.
    // SAFETY: as in `readable`: our index word in the live mapping.
    @inlinable
    public var writePosition: UInt32 { ferry_load_relaxed_u32(producer) }

    /// Publishes `count` written entries to the kernel.
    @inlinable
    public func produce(_ count: UInt32) {
        // SAFETY: as in `readable`: our index word in the live mapping.
        ferry_store_release_u32(producer, ferry_load_relaxed_u32(producer) &+ count)
    }

    /// Entries produced that the kernel has not consumed yet.
    @inlinable
    public func pending() -> UInt32 {
        // SAFETY: as in `readable`: the two index words in the live mapping.
        ferry_load_relaxed_u32(producer) &- ferry_load_acquire_u32(consumer)
    }

    /// The kernel asks to be woken (XDP_USE_NEED_WAKEUP): a driver that went
    /// idle consumes the fill or TX ring only after a `recvfrom`/`sendto`/`poll`.
    // SAFETY: the kernel's flags word in the live mapping (init).
    @inlinable
    public var needsWakeup: Bool { ferry_load_relaxed_u32(flags) & UInt32(XDP_RING_NEED_WAKEUP) != 0 }

    // MARK: entries

    /// A fill or completion ring entry: the UMEM offset of a frame.
    @inlinable
    public func address(at position: UInt32) -> UnsafeMutablePointer<UInt64> {
        // SAFETY: position is masked to size - 1 (the kernel accepts only power-of-two ring sizes), and
        // the mapping holds size 8-byte entries from `entries`.
        (entries + Int(position & mask) &* 8).assumingMemoryBound(to: UInt64.self)
    }

    /// An RX or TX ring entry (struct xdp_desc): the frame's UMEM offset at 0,
    /// its length at 8 (u32), options at 12.
    @inlinable
    public func descriptor(at position: UInt32) -> UnsafeMutableRawPointer {
        // SAFETY: position is masked to size - 1, and the mapping holds size 16-byte descriptors from
        // `entries`.
        entries + Int(position & mask) &* 16
    }
}
