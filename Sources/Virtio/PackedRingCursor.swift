/// A place in a packed ring: a position and the wrap counter of its lap
/// (virtio 1.2 §2.8, "Driver and Device Ring Wrap Counters"). The counter
/// flips each time the position passes the ring's last descriptor, which is
/// how a descriptor's flags tell this lap's writes from the last one's. The
/// device keeps two: where it reads the driver's next chain, and where its
/// next used descriptor goes.
@usableFromInline
struct PackedRingCursor: Equatable {
    /// Below the ring's size.
    @usableFromInline var position: UInt16
    @usableFromInline var wrap: Bool

    @inlinable
    init(position: UInt16, wrap: Bool) {
        self.position = position
        self.wrap = wrap
    }

    /// The next position; after the ring's last, the first of the next lap.
    @inlinable
    mutating func advance(ringSize: UInt32) {
        let next = UInt32(position) &+ 1
        if next == ringSize {
            position = 0
            wrap.toggle()
        } else {
            position = UInt16(truncatingIfNeeded: next)
        }
    }

    /// `count` positions on, `count` at most the ring's size.
    @inlinable
    mutating func advance(by count: UInt32, ringSize: UInt32) {
        // No overflow: position < ringSize <= 2^15 and count <= ringSize.
        let next = UInt32(position) &+ count
        if next >= ringSize {
            position = UInt16(truncatingIfNeeded: next &- ringSize)
            wrap.toggle()
        } else {
            position = UInt16(truncatingIfNeeded: next)
        }
    }
}
