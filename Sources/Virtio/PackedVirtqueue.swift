import CFerry
import Glibc
import Packets
import Platform

/// Byte layout of a packed virtqueue (virtio 1.2 §2.8).
@usableFromInline
enum PackedRingLayout {
    @usableFromInline static let descriptorSize = 16
    @usableFromInline static let flagNext: UInt16 = 1           // VIRTQ_DESC_F_NEXT
    @usableFromInline static let flagWrite: UInt16 = 2          // VIRTQ_DESC_F_WRITE
    @usableFromInline static let flagIndirect: UInt16 = 4       // VIRTQ_DESC_F_INDIRECT
    @usableFromInline static let flagAvail: UInt16 = 1 << 7     // VIRTQ_DESC_F_AVAIL
    @usableFromInline static let flagUsed: UInt16 = 1 << 15     // VIRTQ_DESC_F_USED
    @usableFromInline static let eventsEnabled: UInt16 = 0      // RING_EVENT_FLAGS_ENABLE
    @usableFromInline static let eventsDisabled: UInt16 = 1     // RING_EVENT_FLAGS_DISABLE
    @usableFromInline static let eventAtDescriptor: UInt16 = 2  // RING_EVENT_FLAGS_DESC (EVENT_IDX only)
    @usableFromInline static let maxSize: UInt32 = 32768
    /// Bit 15 of an event offset, and of each half of a vhost-user ring base: the wrap counter.
    @usableFromInline static let wrapBit: UInt16 = 1 << 15
    /// §2.8 "Driver and Device Ring Wrap Counters": both start at 1, at position 0.
    @usableFromInline static let initialBase: UInt32 = 0x8000_8000

    /// Available in the lap whose driver wrap counter is `wrap`: AVAIL matches
    /// it and USED does not (a used descriptor has both equal).
    @inlinable
    static func isAvailable(_ flags: UInt16, wrap: Bool) -> Bool {
        (flags & flagAvail != 0) == wrap && (flags & flagUsed != 0) != wrap
    }
}

/// One packed virtqueue of a device, walked from the device side: the same
/// operations as `SplitVirtqueue` (pull from a TX ring, push into an RX ring,
/// lend an RX chain to a TAP's `readv`, event suppression) over one ring of
/// descriptors that the driver marks available and the device marks used in
/// place, each side keeping a wrap counter (virtio 1.2 §2.8).
///
/// Used descriptors are written in the order their chains were taken, each
/// over the first descriptor of its chain, so the device never writes a slot
/// the driver may still be filling. Those of a burst go out together: all but
/// the first are written, then the first's flags with one release store, as
/// the spec's multi-buffer rule asks of mergeable RX buffers. That is also all
/// IN_ORDER asks of a device (chains used in the order they were made
/// available), so it is offered. The shortcut it allows, one used descriptor
/// for a whole batch, is taken where every chain's used length is the same
/// zero: a TX burst (`releaseInOrder`); an RX chain's length is its own.
public final class PackedVirtqueue {
    public let index: Int

    // Configuration, written by the control plane while the data path is quiesced.
    public var configuration = RingConfiguration()
    public var enabled = false
    public var kickFD: Int32 = -1
    public var callFD: Int32 = -1
    public var errorFD: Int32 = -1
    /// Set by SET_VRING_BASE (vhost-user.rst, "Vring descriptor indices for
    /// packed virtqueues"): bits 0-14 the next position to read, bit 15 the
    /// driver's wrap counter there. The upper half (the used side) is taken as
    /// equal to the lower: Ferry stops a ring with nothing in flight, and DPDK's
    /// virtio-user sends it as zero.
    public var baseIndex: UInt32 = PackedRingLayout.initialBase
    /// Largest frame accepted from a guest (64 KiB of GSO payload plus headers).
    public var maxFrameLength: UInt32 = 65_550

    // Data-path state, owned by the worker while `isRunning`.
    @usableFromInline var ring: UnsafeMutableRawPointer? = nil
    @usableFromInline var driverEvents: UnsafeMutableRawPointer? = nil
    @usableFromInline var deviceEvents: UnsafeMutableRawPointer? = nil
    @usableFromInline var ringSize: UInt32 = 0
    @usableFromInline unowned(unsafe) var memory: GuestMemory? = nil
    @usableFromInline var memoryOwner: GuestMemory? = nil
    /// The next position to read, and the driver's wrap counter for it.
    @usableFromInline var avail = PackedRingCursor(position: 0, wrap: true)
    /// Where the next used descriptor goes, and the device's wrap counter there.
    @usableFromInline var used = PackedRingCursor(position: 0, wrap: true)
    /// Chains taken but not yet marked used, each as id | descriptors << 16 |
    /// length << 32; room for a whole ring (every chain holds a descriptor).
    @usableFromInline var pending: UnsafeMutablePointer<UInt64>? = nil
    @usableFromInline var pendingCapacity = 0
    @usableFromInline var pendingCount = 0
    /// Ring descriptors those chains hold: the device must not read past the
    /// ring's worth, or it would read slots it has not given back.
    @usableFromInline var inFlight: UInt32 = 0
    /// Where the used position stood at the last notification decision, as a
    /// place in the two laps a wrap counter tells apart (`lapIndex`).
    @usableFromInline var signalled: UInt32 = 0
    /// The chain `nextChain` lent: where the ring goes on after it, and its size.
    @usableFromInline var lentEnd = PackedRingCursor(position: 0, wrap: true)
    @usableFromInline var lentDescriptors: UInt32 = 0
    /// One segment's buffers, for segments written straight into the guest's
    /// receive chains (PackedVirtqueue+Segments.swift).
    @usableFromInline let segmentPieces: UnsafeMutablePointer<iovec>
    /// The TX chains of one buffer a pull's run found (PackedVirtqueue+SingleBuffers.swift).
    @usableFromInline let singleBuffers: UnsafeMutablePointer<PackedSingleBuffer>
    /// Where the queue started reading, for the control thread's health check.
    public private(set) var startIndex: UInt16 = 0
    /// The worker reads this before touching the ring.
    public internal(set) var isRunning = false
    /// The first guest error seen; the queue stays stopped until reconfigured.
    public internal(set) var error: VirtqueueError? = nil

    public init(index: Int) {
        self.index = index
        segmentPieces = .allocate(capacity: SegmentBuffers<UnloggedWrites>.maxPieces)
        // SAFETY: the fill covers exactly the maxPieces iovecs just allocated.
        segmentPieces.initialize(repeating: iovec(), count: SegmentBuffers<UnloggedWrites>.maxPieces)
        singleBuffers = .allocate(capacity: Self.singleBufferRun)
    }

    deinit {
        pending?.deallocate()
        segmentPieces.deallocate()
        singleBuffers.deallocate()
    }

    /// virtio 1.2 §2.8: up to 2^15 entries, no power of two required.
    public static let maxSize = PackedRingLayout.maxSize

    /// Checks the configuration against guest memory and starts the queue at `baseIndex`.
    public func start(memory: GuestMemory) throws(VirtqueueError) {
        let c = configuration
        let n = UInt32(c.size)
        guard n > 0, n <= PackedRingLayout.maxSize else { throw .packedSizeInvalid(n) }
        // §2.8 "Structure Size and Alignment": the ring on 16 bytes, each event structure on 4.
        guard c.descAddress.rawValue % 16 == 0,
              let r = memory.translate(c.descAddress, length: UInt64(PackedRingLayout.descriptorSize) * UInt64(n)) else {
            throw .ringNotMapped(.descriptorRing, address: c.descAddress.rawValue)
        }
        guard c.availAddress.rawValue % 4 == 0, let driver = memory.translate(c.availAddress, length: 4) else {
            throw .ringNotMapped(.driverEventArea, address: c.availAddress.rawValue)
        }
        guard c.usedAddress.rawValue % 4 == 0, let device = memory.translate(c.usedAddress, length: 4) else {
            throw .ringNotMapped(.deviceEventArea, address: c.usedAddress.rawValue)
        }
        let position = UInt16(truncatingIfNeeded: baseIndex) & ~PackedRingLayout.wrapBit
        guard UInt32(position) < n else { throw .basePositionOutOfRange(position, size: c.size) }
        if pendingCapacity < Int(n) {
            pending?.deallocate()
            pending = .allocate(capacity: Int(n))
            pendingCapacity = Int(n)
        }
        ring = r
        driverEvents = driver
        deviceEvents = device
        ringSize = n
        memoryOwner = memory
        self.memory = memory
        avail = PackedRingCursor(position: position,
                                 wrap: UInt16(truncatingIfNeeded: baseIndex) & PackedRingLayout.wrapBit != 0)
        used = avail
        signalled = lapIndex(used)
        pendingCount = 0
        inFlight = 0
        lentDescriptors = 0
        startIndex = position
        error = nil
        // We poll: ask the driver not to kick.
        // SAFETY: `device` is the 4-byte device event area start() translated (the used address,
        // 4-aligned, checked above); flags sit at offset 2.
        ferry_store_relaxed_u16(device + 2, PackedRingLayout.eventsDisabled)
        markDeviceEvents()
        isRunning = true
    }

    /// Stops the queue and returns the value to hand back in GET_VRING_BASE:
    /// the next position and wrap counter, in both halves.
    @discardableResult
    public func stop() -> UInt32 {
        var next = baseIndex
        if isRunning {
            let half = UInt32(avail.position) | (avail.wrap ? UInt32(PackedRingLayout.wrapBit) : 0)
            next = half | half << 16
        }
        isRunning = false
        ring = nil
        driverEvents = nil
        deviceEvents = nil
        memory = nil
        memoryOwner = nil
        baseIndex = next
        return next
    }

    /// Forgets everything: a reset device or a departed front-end.
    public func reset() {
        stop()
        configuration.forgetRing()
        baseIndex = PackedRingLayout.initialBase
        enabled = false
        kickFD = -1
        callFD = -1
        errorFD = -1
        error = nil
    }

    @usableFromInline
    func fail(_ e: VirtqueueError) {
        error = e
        isRunning = false
    }

    /// The memory table the queue translates through (see `SplitVirtqueue.memoryTable`).
    public var memoryTable: GuestMemory? { memory }

    /// A mark that moves when the driver posts or the device takes a chain,
    /// for the control thread's health check; nil while stopped.
    public var availIndexInRing: UInt16? {
        guard isRunning else { return nil }
        return headFlags() == nil ? avail.position : avail.position &+ 1
    }

    // MARK: Positions

    /// A position and its wrap counter as one place in the two laps the
    /// counter tells apart (0 ..< 2 * size), so that distances are subtractions.
    @inlinable
    func lapIndex(_ position: UInt16, wrap: Bool) -> UInt32 {
        wrap ? UInt32(position) : UInt32(position) &+ ringSize
    }

    @inlinable
    func lapIndex(_ place: PackedRingCursor) -> UInt32 { lapIndex(place.position, wrap: place.wrap) }

    /// The flags of the descriptor at the read position if the driver has made
    /// it available, nil otherwise — or when a ring's worth is already in flight,
    /// since the slot there is one the device has not given back.
    @inlinable
    func headFlags() -> UInt16? {
        if inFlight >= ringSize { return nil }
        // Acquire: the chain's descriptors, written before the head's flags, must be
        // visible to the loads that follow.
        // SAFETY: callers checked isRunning, so ring is the 16 * size bytes start() translated; avail.position < size.
        let flags = ferry_load_acquire_u16(ring.unsafelyUnwrapped + Int(avail.position) &* 16 + 14)
        return PackedRingLayout.isAvailable(flags, wrap: avail.wrap) ? flags : nil
    }

    /// A walker for the chain at the read position, whose head has `flags`.
    @inlinable
    func chain(headFlags flags: UInt16) -> PackedDescriptorWalker {
        // SAFETY: only called after headFlags() found a head, so the queue is running and ring translated.
        PackedDescriptorWalker(ring: ring.unsafelyUnwrapped, size: ringSize, from: avail, headFlags: flags,
                               budget: ringSize &- inFlight)
    }

    /// Takes the chain `walker` walked: its used descriptor is owed, the read position moves past it.
    @inlinable
    func take(_ walker: PackedDescriptorWalker, written: Int) {
        take(id: walker.bufferID, descriptors: walker.ringDescriptors, end: walker.end, written: written)
    }

    @inlinable
    func take(id: UInt16, descriptors: UInt32, end: PackedRingCursor, written: Int) {
        // SAFETY: pending holds ringSize entries (start() allocated them), and each entry holds at least one
        // of the at most ringSize descriptors in flight (headFlags() refuses a head past that).
        pending.unsafelyUnwrapped[pendingCount] = Self.pendingEntry(id: id, descriptors: descriptors, written: written)
        pendingCount &+= 1
        inFlight &+= descriptors
        avail = end
    }

    /// A taken chain's entry in `pending`: its buffer id, its ring descriptors
    /// and the bytes written into it (its used length).
    @inlinable
    static func pendingEntry(id: UInt16, descriptors: UInt32, written: Int) -> UInt64 {
        UInt64(id) | UInt64(descriptors) << 16 | UInt64(UInt32(truncatingIfNeeded: written)) << 32
    }

    // MARK: Used descriptors and notifications

    /// Marks every taken chain used, in order, the first one last (release),
    /// and tells the driver if it asked to be told.
    @inlinable
    func publishUsed() {
        let n = pendingCount
        guard n > 0 else { return }
        // SAFETY: entries were taken, so the queue ran; callers check isRunning before publishing.
        let r = ring.unsafelyUnwrapped
        let entries = pending.unsafelyUnwrapped
        // A local: the stores into the ring below may alias the queue's properties.
        let size = ringSize
        var place = used
        let first = r + Int(place.position) &* 16
        let firstFlags: UInt16 = place.wrap ? PackedRingLayout.flagAvail | PackedRingLayout.flagUsed : 0
        var i = 0
        while i < n {
            let e = entries[i]
            // SAFETY: place.position < ringSize (a cursor's is), so the slot is inside the translated ring.
            let d = r + Int(place.position) &* 16
            d.storeBytes(of: UInt32(truncatingIfNeeded: e >> 32), toByteOffset: 8, as: UInt32.self)
            d.storeBytes(of: UInt16(truncatingIfNeeded: e), toByteOffset: 12, as: UInt16.self)
            if i > 0 {
                ferry_store_relaxed_u16(d + 14, place.wrap ? PackedRingLayout.flagAvail | PackedRingLayout.flagUsed : 0)
            }
            // A chain holds at most ringSize descriptors.
            place.advance(by: UInt32(UInt16(truncatingIfNeeded: e >> 16)), ringSize: size)
            i &+= 1
        }
        // Release: every entry's id and length, the later entries' flags and (for
        // RX) the frame bytes must be visible before the driver sees the first one used.
        ferry_store_release_u16(first + 14, firstFlags)
        // Every chain taken holds its descriptors in flight: the slots written lie among those.
        if configuration.dirtyLog != nil { markUsedDescriptors(from: UInt32(used.position), count: inFlight) }
        used = place
        pendingCount = 0
        inFlight = 0
        notifyIfNeeded()
    }

    /// With VIRTIO_F_IN_ORDER, one used descriptor for the whole burst (virtio
    /// 1.2 §2.8, "In-order use of descriptors"): written where the burst's
    /// first would go, with the id of its last chain, and the used position
    /// skips past every descriptor the burst held; the driver counts the chains
    /// back from the id, in the order it made them available. A TX chain's
    /// used length is 0, so no entry carries anything the one does not.
    /// Three stores per burst instead of three per chain, on one line: DPDK's
    /// vhost dequeue does the same, and DPDK's virtio PMD reclaims such a burst
    /// in one step.
    @inlinable
    func releaseInOrder() {
        // SAFETY: release checked isRunning, so ring is the 16 * ringSize bytes start() translated, and
        // used.position < ringSize; pending holds pendingCount > 0 entries (release checked).
        let d = ring.unsafelyUnwrapped + Int(used.position) &* PackedRingLayout.descriptorSize
        let last = pending.unsafelyUnwrapped[pendingCount &- 1]
        d.storeBytes(of: 0 as UInt32, toByteOffset: 8, as: UInt32.self)
        d.storeBytes(of: UInt16(truncatingIfNeeded: last), toByteOffset: 12, as: UInt16.self)
        // Release: the id and length before the flags that make them the driver's.
        ferry_store_release_u16(d + 14, used.wrap ? PackedRingLayout.flagAvail | PackedRingLayout.flagUsed : 0)
        if configuration.dirtyLog != nil { markUsedDescriptors(from: UInt32(used.position), count: 1) }
        // inFlight <= ringSize: headFlags() refuses a head past a ring's worth.
        used.advance(by: inFlight, ringSize: ringSize)
        pendingCount = 0
        inFlight = 0
        notifyIfNeeded()
    }

    /// §2.8 "Driver and Device Event Suppression": the driver's structure says
    /// always, never, or (with EVENT_IDX) once the used position passes one place.
    @inlinable
    func notifyIfNeeded() {
        guard callFD >= 0 else { return }
        // SAFETY: called from publishUsed, while running: the driver's 4-byte area start() translated.
        let events = driverEvents.unsafelyUnwrapped
        // The used flags must be visible before we read the driver's request, or
        // both sides could miss each other's update.
        ferry_fence_seq_cst()
        let flags = ferry_load_relaxed_u16(events + 2) & 3
        let now = lapIndex(used)
        let shouldSignal: Bool
        if flags == PackedRingLayout.eventsDisabled {
            shouldSignal = false
        } else if flags == PackedRingLayout.eventAtDescriptor && configuration.eventIndex {
            let offWrap = ferry_load_relaxed_u16(events)
            let laps = ringSize &* 2
            // An offset the guest wrote past the ring is taken modulo the laps: a wrong answer for that guest only.
            let event = lapIndex(offWrap & ~PackedRingLayout.wrapBit, wrap: offWrap & PackedRingLayout.wrapBit != 0) % laps
            // Signal when the requested place lies in [signalled, now): the entries just published.
            shouldSignal = (now &+ laps &- event &- 1) % laps < (now &+ laps &- signalled) % laps
        } else {
            // Enabled, or a request this driver may not make (DESC without EVENT_IDX, 3): tell it.
            shouldSignal = true
        }
        signalled = now
        if shouldSignal { signalCall() }
    }

    @usableFromInline
    func signalCall() { EventFD.signal(callFD) }

    /// Asks the driver to kick again before a worker sleeps on the kick eventfd.
    /// Returns true when a chain arrived meanwhile: the caller must poll again.
    public func enableNotifications() -> Bool {
        guard isRunning, let device = deviceEvents else { return false }
        // SAFETY: running, so deviceEvents is the 4-byte area start() translated; flags sit at offset
        // 2.
        ferry_store_relaxed_u16(device + 2, PackedRingLayout.eventsEnabled)
        if configuration.dirtyLog != nil { markDeviceEvents() }
        // The request must be visible before we look at the ring again; the
        // driver orders its descriptor store before reading ours the same way.
        ferry_fence_seq_cst()
        return headFlags() != nil
    }

    /// Tells the driver not to kick while we poll.
    public func disableNotifications() {
        guard isRunning, let device = deviceEvents else { return }
        // SAFETY: running, so deviceEvents is the 4-byte area start() translated; flags sit at offset
        // 2.
        ferry_store_relaxed_u16(device + 2, PackedRingLayout.eventsDisabled)
        if configuration.dirtyLog != nil { markDeviceEvents() }
    }

    /// Chains the driver has made available and we have not taken; 0 when the
    /// queue is stopped. Walks the ring (at most once round).
    public var postedBuffers: Int { postedBuffers(atMost: Int.max) }

    /// As `postedBuffers`, the walk ending once `limit` chains are counted: the
    /// generator asks once per burst, for no more than a burst.
    @inlinable
    public func postedBuffers(atMost limit: Int) -> Int {
        guard isRunning else { return 0 }
        // SAFETY: running, so ring is translated; a cursor's position stays below ringSize.
        let r = ring.unsafelyUnwrapped
        var place = avail
        var seen = inFlight
        var chains = 0
        while seen < ringSize && chains < limit {
            let flags = ferry_load_acquire_u16(r + Int(place.position) &* 16 + 14)
            if !PackedRingLayout.isAvailable(flags, wrap: place.wrap) { break }
            if flags & PackedRingLayout.flagNext == 0 { chains &+= 1 }
            seen &+= 1
            place.advance(ringSize: ringSize)
        }
        return chains
    }
}
