import CFerry
import Glibc
import Packets
import Platform

/// Byte layout of a split virtqueue (virtio 1.2 §2.7).
@usableFromInline
enum SplitRingLayout {
    @usableFromInline static let descriptorSize = 16
    @usableFromInline static let descFlagNext: UInt16 = 1       // VIRTQ_DESC_F_NEXT
    @usableFromInline static let descFlagWrite: UInt16 = 2      // VIRTQ_DESC_F_WRITE
    @usableFromInline static let descFlagIndirect: UInt16 = 4   // VIRTQ_DESC_F_INDIRECT
    @usableFromInline static let availNoInterrupt: UInt16 = 1   // VIRTQ_AVAIL_F_NO_INTERRUPT
    @usableFromInline static let usedNoNotify: UInt16 = 1       // VIRTQ_USED_F_NO_NOTIFY
    /// §2.7: Queue Size is a power of 2 no larger than 32768.
    public static let maxSize: UInt32 = 32768

    static func descriptorTableBytes(_ size: Int) -> UInt64 { UInt64(16 * size) }
    static func availBytes(_ size: Int) -> UInt64 { UInt64(6 + 2 * size) }
    static func usedBytes(_ size: Int) -> UInt64 { UInt64(6 + 8 * size) }
}

/// One split virtqueue of a device, walked from the device side.
///
/// The control plane configures it (size, ring addresses, base index) and
/// `start`s it once memory is mapped; the worker then calls `pull`/`release`
/// (device-readable queues) or `push` (device-writable queues). Every value the
/// guest wrote is loaded once and checked before use; the first bad value
/// stops the queue with a `VirtqueueError` and the device is marked broken.
public final class SplitVirtqueue {
    public let index: Int

    // Configuration, written by the control plane while the data path is quiesced.
    public var configuration = RingConfiguration()
    public var enabled = false
    public var kickFD: Int32 = -1
    public var callFD: Int32 = -1
    public var errorFD: Int32 = -1
    /// Set by SET_VRING_BASE: where the driver wants the device to start.
    public var baseIndex = RingIndex(0)

    // Data-path state, owned by the worker while `isRunning`.
    @usableFromInline var mask: UInt16 = 0
    @usableFromInline var desc: UnsafeMutableRawPointer? = nil
    @usableFromInline var avail: UnsafeMutableRawPointer? = nil
    @usableFromInline var used: UnsafeMutableRawPointer? = nil
    @usableFromInline unowned(unsafe) var memory: GuestMemory? = nil
    @usableFromInline var memoryOwner: GuestMemory? = nil
    /// Next avail ring slot to consume (free-running, wraps at 2^16 like the driver's index).
    public var lastAvail = RingIndex(0)
    /// Used index as last published to the driver.
    public var usedIndex = RingIndex(0)
    /// Used entries written but not yet published (between pull and release).
    @usableFromInline var pendingUsed: UInt16 = 0
    /// Used index at the last notification decision (EVENT_IDX's "old").
    @usableFromInline var signalledUsed = RingIndex(0)
    /// Where the queue started consuming, after any resync.
    public private(set) var startIndex: UInt16 = 0
    /// The worker reads this before touching the rings.
    public internal(set) var isRunning = false
    /// The first guest error seen; the queue stays stopped until reconfigured.
    public internal(set) var error: VirtqueueError? = nil
    /// Largest frame accepted from a guest (64 KiB of GSO payload plus headers).
    public var maxFrameLength: UInt32 = 65_550

    /// One segment's buffers and chains, for segments written straight into
    /// the guest's receive chains (SplitVirtqueue+Segments.swift).
    @usableFromInline let segmentPieces: UnsafeMutablePointer<iovec>
    @usableFromInline let segmentChains: UnsafeMutablePointer<UsedChain>
    /// The chains a run of whole frames reserved before copying (SplitVirtqueue+WholeFrames.swift).
    @usableFromInline let reservedChains: UnsafeMutablePointer<ReservedChain>
    /// The chains a run of single-buffer frames found before taking them (SplitVirtqueue+SingleBuffers.swift).
    @usableFromInline let singleBufferChains: UnsafeMutablePointer<SingleBufferChain>

    public init(index: Int) {
        self.index = index
        let pieces = SegmentBuffers<UnloggedWrites>.maxPieces
        // SAFETY: each fill covers exactly the `pieces` entries allocated just before it.
        segmentPieces = .allocate(capacity: pieces)
        segmentPieces.initialize(repeating: iovec(), count: pieces)
        segmentChains = .allocate(capacity: pieces)
        segmentChains.initialize(repeating: UsedChain(head: DescriptorIndex(checked: 0), length: 0), count: pieces)
        reservedChains = .allocate(capacity: Self.reservedChainCapacity)
        singleBufferChains = .allocate(capacity: Self.singleBufferRun)
    }

    deinit {
        segmentPieces.deallocate()
        segmentChains.deallocate()
        reservedChains.deallocate()
        singleBufferChains.deallocate()
    }

    /// virtio 1.2 §2.7: Queue Size is a power of 2 no larger than 32768.
    public static let maxSize = SplitRingLayout.maxSize

    /// Checks the configuration against guest memory and starts the queue.
    /// Resumes from the used index in the ring when it disagrees with the base
    /// (a back-end restart: the driver's view of what was consumed is the used index).
    public func start(memory: GuestMemory) throws(VirtqueueError) {
        let c = configuration
        let n = UInt32(c.size)
        guard n > 0, n <= SplitRingLayout.maxSize, n & (n - 1) == 0 else { throw .sizeInvalid(n) }
        guard let d = memory.translate(c.descAddress, length: SplitRingLayout.descriptorTableBytes(Int(n))) else {
            throw .ringNotMapped(.descriptorTable, address: c.descAddress.rawValue)
        }
        guard let a = memory.translate(c.availAddress, length: SplitRingLayout.availBytes(Int(n))) else {
            throw .ringNotMapped(.availRing, address: c.availAddress.rawValue)
        }
        guard let u = memory.translate(c.usedAddress, length: SplitRingLayout.usedBytes(Int(n))) else {
            throw .ringNotMapped(.usedRing, address: c.usedAddress.rawValue)
        }
        desc = d
        avail = a
        used = u
        mask = UInt16(n - 1)
        memoryOwner = memory
        self.memory = memory
        lastAvail = baseIndex
        usedIndex = baseIndex
        // SAFETY: u is the used ring translated just above for usedBytes(size) >= 6 bytes: flags at 0
        // and idx at 2 lie inside it.
        let ringUsed = RingIndex(ferry_load_acquire_u16(u + 2))
        if ringUsed != baseIndex {
            lastAvail = ringUsed
            usedIndex = ringUsed
        }
        signalledUsed = usedIndex
        startIndex = lastAvail.rawValue
        pendingUsed = 0
        error = nil
        // We poll: ask the driver not to kick. With EVENT_IDX the driver ignores
        // this flag and kicks only when it passes avail_event, which we leave behind.
        ferry_store_relaxed_u16(u, SplitRingLayout.usedNoNotify)
        markUsedRing(offset: 0, length: 2)
        isRunning = true
    }

    /// Stops the queue and returns the index to hand back in GET_VRING_BASE.
    @discardableResult
    public func stop() -> RingIndex {
        let next = isRunning ? lastAvail : baseIndex
        isRunning = false
        desc = nil
        avail = nil
        used = nil
        memory = nil
        memoryOwner = nil
        baseIndex = next
        return next
    }

    /// Forgets everything: a reset device or a departed front-end.
    public func reset() {
        stop()
        configuration.forgetRing()
        baseIndex = RingIndex(0)
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

    /// The driver's avail index as the ring holds it now, for health checks
    /// from the control thread; nil while stopped.
    public var availIndexInRing: UInt16? {
        guard isRunning, let a = avail else { return nil }
        // SAFETY: running, so `a` is the avail ring start() translated (availBytes(size) >= 6 bytes);
        // idx is at 2.
        return ferry_load_acquire_u16(a + 2)
    }

    /// Asks the driver to kick again, before a worker sleeps on the kick
    /// eventfd: with EVENT_IDX by publishing avail_event = the next slot we
    /// will read, without it by clearing VIRTQ_USED_F_NO_NOTIFY (virtio 1.2
    /// §2.7.10). Returns true when chains arrived meanwhile: the caller must
    /// poll again instead of sleeping, or that work would wait for a kick the
    /// driver never sends.
    public func enableNotifications() -> Bool {
        // SAFETY: running, so `u` and `a` are the used and avail rings start() translated: the flags
        // word at u + 0 and the avail idx at a + 2 lie in their first 6 bytes.
        guard isRunning, let u = used, let a = avail else { return false }
        if configuration.eventIndex {
            // SAFETY: avail_event sits at 4 + 8 * size, inside the usedBytes(size) = 6 + 8 * size start() translated.
            ferry_store_relaxed_u16(u + 4 + 8 &* (Int(mask) &+ 1), lastAvail.rawValue)
            markUsedRing(offset: 4 &+ 8 &* (Int(mask) &+ 1), length: 2)
        } else {
            ferry_store_relaxed_u16(u, 0)
            markUsedRing(offset: 0, length: 2)
        }
        // The request must be visible before we look at the avail index again;
        // the driver orders its index store before reading ours the same way.
        ferry_fence_seq_cst()
        return RingIndex(ferry_load_acquire_u16(a + 2)) != lastAvail
    }

    /// Tells the driver not to kick while we poll. With EVENT_IDX nothing is
    /// written: avail_event stays behind, and the driver kicks only when its
    /// index passes it.
    public func disableNotifications() {
        // SAFETY: running, so `u` is the used ring start() translated; its flags word is at offset 0.
        guard isRunning, let u = used, !configuration.eventIndex else { return }
        ferry_store_relaxed_u16(u, SplitRingLayout.usedNoNotify)
        markUsedRing(offset: 0, length: 2)
    }

    /// The descriptor table, for walking a chain whose head the avail ring named.
    @inlinable
    var descriptorTable: UnsafeMutableRawPointer {
        // SAFETY: a head comes only from the avail ring of a running queue (`head(at:)`, after the
        // callers' isRunning check), so desc is the table start() translated for size * 16 bytes.
        desc.unsafelyUnwrapped
    }

    /// Chains the driver has made available and we have not consumed; 0 when
    /// the queue is stopped. A bad index is left for the next pull or push to report.
    @inlinable
    public var postedBuffers: Int {
        guard isRunning else { return 0 }
        // SAFETY: running, so avail is the ring start() translated (availBytes(size)); idx is at offset 2.
        let n = RingIndex(ferry_load_acquire_u16(avail.unsafelyUnwrapped + 2)) &- lastAvail
        return n > mask &+ 1 ? 0 : Int(n)
    }

    /// The driver's avail index, checked against the ring size.
    @inlinable
    func availableCount() -> Int? {
        // Acquire: the ring entries and descriptors the driver wrote before
        // publishing this index must be visible to the loads that follow.
        // SAFETY: callers checked isRunning, so avail is the ring start() translated; idx is at offset 2.
        let availIndex = RingIndex(ferry_load_acquire_u16(avail.unsafelyUnwrapped + 2))
        let n = availIndex &- lastAvail
        if n > mask &+ 1 {
            fail(.availIndexJump(availIndex: availIndex.rawValue, lastSeen: lastAvail.rawValue, size: mask &+ 1))
            return nil
        }
        return Int(n)
    }

    @inlinable
    func head(at index: RingIndex) -> DescriptorIndex? {
        // SAFETY: running (the caller checked), and slot <= mask < size: the entry is inside availBytes(size).
        let h = ferry_load_relaxed_u16(avail.unsafelyUnwrapped + 4 + 2 &* index.slot(mask))
        if h > mask {
            fail(.headOutOfRange(h, size: mask &+ 1))
            return nil
        }
        return DescriptorIndex(checked: h)
    }

    @inlinable
    func writeUsed(at index: RingIndex, id: DescriptorIndex, length: UInt32) {
        // SAFETY: running (the caller checked), and slot <= mask < size: the 8-byte entry is inside usedBytes(size).
        let e = used.unsafelyUnwrapped + 4 + 8 &* index.slot(mask)
        e.storeBytes(of: UInt32(id.rawValue), as: UInt32.self)
        e.storeBytes(of: length, toByteOffset: 4, as: UInt32.self)
    }

    /// Writes a run's `count` used entries at the next pending positions, entry i
    /// being `entry(i)`: the id in the low 32 bits, the length in the high
    /// (little-endian, like every ring field here), one 8-byte store each.
    /// The ring, its mask and the position are locals: written through the
    /// queue's properties, every store into the ring could alias them, so each
    /// entry reloaded them and stored the count back — a chain through memory per
    /// frame, 13.6 % of the worker in W1 (docs/PERFORMANCE.md, "W1: what the
    /// front-end pays").
    @inlinable
    func writeUsedRun(_ count: Int, _ entry: (Int) -> UInt64) {
        // SAFETY: callers checked isRunning, so used is the ring start() translated for usedBytes(size);
        // its entries start at offset 4.
        let entries = used.unsafelyUnwrapped + 4
        let mask = self.mask
        var position = usedIndex &+ pendingUsed
        var i = 0
        while i < count {
            // SAFETY: slot <= mask < size, so the 8-byte entry is inside the usedBytes(size) start() translated.
            (entries + 8 &* position.slot(mask)).storeBytes(of: entry(i), as: UInt64.self)
            position &+= 1
            i &+= 1
        }
        pendingUsed &+= UInt16(truncatingIfNeeded: count)
    }

    /// Publishes used entries and tells the driver if it asked to be told.
    @inlinable
    func publishUsed(_ count: UInt16) {
        guard count > 0 else { return }
        let newIndex = usedIndex &+ count
        // Release: the used entries (and, for RX, the frame bytes) must be
        // visible before the driver can see the new index.
        // SAFETY: only called while running, so used is the ring start() translated; idx is at offset 2.
        ferry_store_release_u16(used.unsafelyUnwrapped + 2, newIndex.rawValue)
        if configuration.dirtyLog != nil { markPublished(from: usedIndex.rawValue, count: count) }
        usedIndex = newIndex
        notifyIfNeeded()
    }

    @inlinable
    func notifyIfNeeded() {
        guard callFD >= 0 else { return }
        // SAFETY: called from publishUsed, while running: avail is the ring start() translated.
        let a = avail.unsafelyUnwrapped
        let shouldSignal: Bool
        if configuration.eventIndex {
            // §2.7.10: the used index store must be visible before reading
            // used_event, or both sides could miss each other's update.
            ferry_fence_seq_cst()
            // SAFETY: used_event sits at 4 + 2 * size, inside the availBytes(size) = 6 + 2 * size start() translated.
            let usedEvent = RingIndex(ferry_load_relaxed_u16(a + 4 + 2 &* (Int(mask) &+ 1)))
            let old = signalledUsed
            shouldSignal = (usedIndex &- usedEvent) &- 1 < usedIndex &- old
        } else {
            ferry_fence_seq_cst()
            shouldSignal = ferry_load_relaxed_u16(a) & SplitRingLayout.availNoInterrupt == 0
        }
        signalledUsed = usedIndex
        if shouldSignal { signalCall() }
    }

    @usableFromInline
    func signalCall() { EventFD.signal(callFD) }
}
