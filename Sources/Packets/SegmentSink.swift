/// Where software segmentation writes each segment: straight into a
/// destination's own buffers (a guest's RX buffers, a transmit slot, a TAP
/// write buffer), so a segment is copied once, from the source frame to where
/// it leaves Ferry. Generic use (`some SegmentSink`) keeps calls direct.
public protocol SegmentSink {
    /// Starts a segment of `length` bytes (the virtio-net header not counted);
    /// false when the destination has no room for it: segmentation stops there.
    mutating func beginSegment(length: Int) -> Bool
    /// Copies `count` bytes to `offset` of the segment begun last. The writes
    /// of one segment never overlap and together cover all of it.
    mutating func write(_ bytes: UnsafeRawPointer, count: Int, at offset: Int)
    /// Finishes the segment; `header` is its virtio-net header (num_buffers is the sink's own).
    mutating func endSegment(header: VirtioNetHeader)
}

/// A sink over fixed-size slots in memory the caller owns: slot `i` at
/// `base + i * slotSize` holds the segment's virtio-net header
/// (`headerSize` bytes, 0 for none) and then the segment; `lengths[i]` gets
/// the segment's length. For a destination that takes whole frames from
/// contiguous buffers (a TAP's writev, a packet socket's slot), and tests.
public struct SlotSegmentSink: SegmentSink {
    public let base: UnsafeMutableRawPointer
    public let slotSize: Int
    public let slotCount: Int
    public let headerSize: Int
    public let lengths: UnsafeMutablePointer<Int>
    /// Segments finished so far.
    public var count = 0

    public init(base: UnsafeMutableRawPointer, slotSize: Int, slotCount: Int, headerSize: Int,
                lengths: UnsafeMutablePointer<Int>) {
        precondition(headerSize == 0 || headerSize >= 10, "a virtio-net header has at least 10 bytes")
        self.base = base
        self.slotSize = slotSize
        self.slotCount = slotCount
        self.headerSize = headerSize
        self.lengths = lengths
    }

    /// Where slot `i`'s virtio-net header starts.
    @inlinable
    public func header(_ i: Int) -> UnsafeMutableRawPointer {
        // SAFETY: the caller asks for a slot it filled (i < count <= slotCount); base holds
        // slotCount * slotSize bytes (the owner allocated them).
        base + i &* slotSize
    }

    /// Where slot `i`'s segment (after its header) starts.
    // SAFETY: i <= count < slotCount while a segment is begun (beginSegment's guard), and headerSize <=
    // slotSize, so the segment's start lies in the slotCount * slotSize bytes at base.
    @inlinable
    public func segment(_ i: Int) -> UnsafeMutableRawPointer { base + (i &* slotSize &+ headerSize) }

    @inlinable
    public mutating func beginSegment(length: Int) -> Bool {
        // SAFETY: lengths has slotCount entries (the owner's), and the guard keeps count below
        // slotCount.
        guard count < slotCount && headerSize &+ length <= slotSize else { return false }
        lengths[count] = length
        return true
    }

    @inlinable
    public mutating func write(_ bytes: UnsafeRawPointer, count n: Int, at offset: Int) {
        // SAFETY: beginSegment checked that the segment fits its slot; the
        // segmenter writes only inside the length it announced.
        (segment(count) + offset).copyMemory(from: bytes, byteCount: n)
    }

    @inlinable
    public mutating func endSegment(header: VirtioNetHeader) {
        // SAFETY: count < slotCount (beginSegment's guard for this segment), so the slot lies at base;
        // its header room is headerSize >= 10 bytes (init's precondition), 12 for num_buffers at 10.
        if headerSize > 0 {
            let slot = base + count &* slotSize
            header.store(to: slot)
            // num_buffers: one buffer per slot.
            if headerSize >= 12 { slot.storeBytes(of: UInt16(1).littleEndian, toByteOffset: 10, as: UInt16.self) }
        }
        count &+= 1
    }

    /// Makes the slots free again.
    @inlinable
    public mutating func reset() { count = 0 }
}
