import CFerry

/// What a back-end (the device) did wrong on a ring Ferry drives as the driver. Any of these
/// breaks the port: a well-behaved device never produces one (virtio 1.2 §2.7.8).
public enum DriverRingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The used index moved further than there are chains in flight.
    case usedIndexJump(usedIndex: UInt16, lastSeen: UInt16, inFlight: Int)
    /// A used entry names a descriptor past the table.
    case usedIDOutOfRange(UInt32, size: UInt16)
    /// A used entry names a descriptor the driver had not made available (or that was used already).
    case usedIDNotInFlight(UInt32)
    /// A used entry says the device wrote more than the buffer holds.
    case usedLengthTooLong(id: UInt32, length: UInt32, buffer: UInt32)

    public var description: String {
        switch self {
        case .usedIndexJump(let u, let last, let n):
            "used index \(u) is \(u &- last) ahead of \(last), but only \(n) chains were in flight"
        case .usedIDOutOfRange(let id, let size): "used entry id \(id) is outside the \(size)-entry table"
        case .usedIDNotInFlight(let id): "used entry id \(id) names a descriptor the device did not hold"
        case .usedLengthTooLong(let id, let length, let buffer):
            "used entry id \(id) says \(length) bytes were written into a \(buffer)-byte buffer"
        }
    }
}

/// The driver's side of one split virtqueue (virtio 1.2 §2.7) in memory the driver owns:
/// Ferry as the guest, for a `virtio-user` port, and the test drivers. Each descriptor is a
/// chain of one buffer; the caller says which buffer. The device is as hostile as a guest:
/// the ring is read only through the used index, entries and flags, each loaded once and
/// checked (an id the driver did not hand over, a length past the buffer, an index that
/// jumps), and the first bad value stops the ring with a `DriverRingError`. Nothing the
/// device could rewrite (descriptors, the avail ring) is ever read back.
public final class DriverSplitRing {
    /// Where the three parts lie from the ring's first byte, and how many bytes it takes.
    public struct Layout: Equatable, Sendable {
        public let size: UInt16
        public var descriptorOffset: Int { 0 }
        public var availOffset: Int { Int(SplitRingLayout.descriptorTableBytes(Int(size))) }
        /// §2.7: the used ring is 4-aligned.
        public var usedOffset: Int { (availOffset + Int(SplitRingLayout.availBytes(Int(size))) + 3) & ~3 }
        public var byteCount: Int { usedOffset + Int(SplitRingLayout.usedBytes(Int(size))) }

        public init(size: UInt16) {
            precondition(size > 0 && size & (size &- 1) == 0, "a split ring's size is a power of two")
            self.size = size
        }
    }

    public let layout: Layout
    public var size: UInt16 { layout.size }
    @usableFromInline let mask: UInt16
    @usableFromInline let desc: UnsafeMutableRawPointer
    @usableFromInline let avail: UnsafeMutableRawPointer
    @usableFromInline let used: UnsafeMutableRawPointer
    /// The avail index the driver publishes next (chains offered since are not yet visible).
    @usableFromInline var nextAvail = RingIndex(0)
    /// The used index up to which entries were taken.
    @usableFromInline var lastUsed = RingIndex(0)
    /// Per descriptor: handed to the device and not yet used.
    @usableFromInline let held: UnsafeMutablePointer<Bool>
    @usableFromInline var heldCount = 0
    /// Descriptors the device holds.
    public var inFlight: Int { heldCount }
    @usableFromInline var firstError: DriverRingError?
    /// The first thing the device did wrong; the ring takes nothing more until `reset`.
    public var error: DriverRingError? { firstError }

    /// A ring over `layout.byteCount` bytes at `base` (16-aligned, §2.7), which the
    /// caller owns and keeps mapped for the ring's life; zeroed here.
    // SAFETY: the three parts lie inside [base, base + layout.byteCount), which the caller keeps
    // mapped; `held` is allocated here with one entry per descriptor.
    public init(at base: UnsafeMutableRawPointer, layout: Layout) {
        precondition(Int(bitPattern: base) % 16 == 0, "§2.7 aligns the descriptor table to 16")
        self.layout = layout
        mask = layout.size &- 1
        desc = base + layout.descriptorOffset
        avail = base + layout.availOffset
        used = base + layout.usedOffset
        held = .allocate(capacity: Int(layout.size))
        held.initialize(repeating: false, count: Int(layout.size))
        reset()
    }

    deinit { held.deallocate() }

    /// Back to an empty ring, as before the device first saw it (the device must be gone
    /// or stopped: a new one starts at index 0). We poll, so the device is asked never to
    /// interrupt (VIRTQ_AVAIL_F_NO_INTERRUPT).
    public func reset() {
        // SAFETY: the ring's bytes lie in [base, base + byteCount), the caller's mapping (init).
        (desc).initializeMemory(as: UInt8.self, repeating: 0, count: layout.byteCount)
        ferry_store_relaxed_u16(avail, SplitRingLayout.availNoInterrupt)
        held.update(repeating: false, count: Int(layout.size))
        nextAvail = RingIndex(0)
        lastUsed = RingIndex(0)
        heldCount = 0
        firstError = nil
    }

    /// Hands descriptor `id` (a chain of one buffer) to the device in the next avail slot;
    /// it becomes visible with `publish`. The caller offers only descriptors it holds.
    @inlinable
    public func offer(_ id: UInt16, address: UInt64, length: UInt32, deviceWritable: Bool) {
        // SAFETY: the precondition's first half bounds the `held` read of its second half.
        precondition(id < layout.size && !held[Int(id)], "offered a descriptor the device holds")
        // SAFETY: id < size, so the 16-byte descriptor lies inside the table (init's layout).
        let d = desc + Int(id) &* SplitRingLayout.descriptorSize
        d.storeBytes(of: address.littleEndian, as: UInt64.self)
        d.storeBytes(of: length.littleEndian, toByteOffset: 8, as: UInt32.self)
        d.storeBytes(of: (deviceWritable ? SplitRingLayout.descFlagWrite : 0).littleEndian, toByteOffset: 12,
                     as: UInt16.self)
        d.storeBytes(of: UInt16(0), toByteOffset: 14, as: UInt16.self)
        // SAFETY: the slot is masked by the ring's size; avail.ring starts 4 bytes in.
        (avail + (4 &+ 2 &* nextAvail.slot(mask))).storeBytes(of: id.littleEndian, as: UInt16.self)
        held[Int(id)] = true
        heldCount &+= 1
        nextAvail &+= 1
    }

    /// Makes every chain offered so far visible to the device (one release store).
    @inlinable
    public func publish() {
        // SAFETY: avail.idx is bytes 2-3 of the avail ring.
        ferry_store_release_u16(avail + 2, nextAvail.rawValue)
    }

    /// Whether the device asks to be kicked now (it clears VIRTQ_USED_F_NO_NOTIFY while it
    /// sleeps), read behind a full fence after `publish`, so a device that went to sleep
    /// after our store sees our chains or gets the kick (§2.7.10).
    @inlinable
    public var deviceWantsKick: Bool {
        ferry_fence_seq_cst()
        // SAFETY: used.flags is the used ring's first two bytes.
        return ferry_load_relaxed_u16(used) & SplitRingLayout.usedNoNotify == 0
    }

    /// How many used entries wait to be taken (0 for an index that jumped: `takeUsed` says why).
    @inlinable
    public var usedWaiting: Int {
        // SAFETY: used.idx is bytes 2-3 of the used ring.
        let ready = Int(RingIndex(ferry_load_acquire_u16(used + 2)) &- lastUsed)
        return ready <= inFlight ? ready : 0
    }

    /// Takes up to `limit` used entries, in order, handing each (id, length) to `take`.
    /// Returns how many were taken; stops at the first bad one, which sets `error`
    /// (a length over `bufferLength` is one).
    @inlinable
    public func takeUsed(atMost limit: Int, bufferLength: UInt32, _ take: (UInt16, UInt32) -> Void) -> Int {
        guard firstError == nil, limit > 0 else { return 0 }
        // SAFETY: used.idx is bytes 2-3 of the used ring; acquire orders the entries' loads after it.
        let published = RingIndex(ferry_load_acquire_u16(used + 2))
        let ready = published &- lastUsed
        if ready == 0 { return 0 }
        if Int(ready) > inFlight {
            firstError = .usedIndexJump(usedIndex: published.rawValue, lastSeen: lastUsed.rawValue, inFlight: inFlight)
            return 0
        }
        let n = min(Int(ready), limit)
        var taken = 0
        while taken < n {
            // SAFETY: the slot is masked by the ring's size; used.ring starts 4 bytes in, 8 per entry.
            let entry = used + (4 &+ 8 &* lastUsed.slot(mask))
            let id = UInt32(littleEndian: entry.load(as: UInt32.self))
            let length = UInt32(littleEndian: entry.load(fromByteOffset: 4, as: UInt32.self))
            guard id < UInt32(layout.size) else {
                firstError = .usedIDOutOfRange(id, size: layout.size)
                break
            }
            guard held[Int(id)] else {
                firstError = .usedIDNotInFlight(id)
                break
            }
            guard length <= bufferLength else {
                firstError = .usedLengthTooLong(id: id, length: length, buffer: bufferLength)
                break
            }
            held[Int(id)] = false
            heldCount &-= 1
            lastUsed &+= 1
            take(UInt16(id), length)
            taken &+= 1
        }
        return taken
    }
}
