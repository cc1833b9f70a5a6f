import CFerry

/// Counters of one port queue. The worker that owns the queue is the only
/// writer; the control thread reads them at any time. Both sides go through
/// relaxed atomics (plain moves on x86-64), so a reader never sees a torn value
/// and the writer pays nothing for the sharing.
public final class QueueCounters: @unchecked Sendable {
    @usableFromInline static let rxPackets = 0
    @usableFromInline static let rxBytes = 1
    @usableFromInline static let txPackets = 2
    @usableFromInline static let txBytes = 3
    @usableFromInline static let firstDrop = 4

    @usableFromInline static let firstOffload = firstDrop + DropReason.allCases.count
    public static let slotCount = firstOffload + OffloadCounter.allCases.count
    @usableFromInline let slots: UnsafeMutablePointer<UInt64>

    public init() {
        // Whole cache lines of their own: two workers' counters never share a line.
        let bytes = (Self.slotCount * 8 + 63) & ~63
        // SAFETY: bytes is a multiple of 64, fresh and 64-byte aligned: exactly bytes / 8 UInt64s,
        // bound and filled as such.
        slots = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            .bindMemory(to: UInt64.self, capacity: bytes / 8)
        slots.initialize(repeating: 0, count: bytes / 8)
    }

    deinit { slots.deallocate() }

    @inlinable
    func add(_ slot: Int, _ n: UInt64) {
        // SAFETY: slot is one of the constants above or firstDrop/firstOffload plus a case's raw value,
        // all below slotCount, which the allocation covers.
        let p = slots + slot
        ferry_store_relaxed_u64(p, ferry_load_relaxed_u64(p) &+ n)
    }

    // SAFETY: as in `add`: slot < slotCount.
    @inlinable
    func read(_ slot: Int) -> UInt64 { ferry_load_relaxed_u64(slots + slot) }

    /// Frames Ferry took from the port.
    @inlinable public func received(packets: Int, bytes: UInt64) {
        add(Self.rxPackets, UInt64(packets))
        add(Self.rxBytes, bytes)
    }

    /// Frames Ferry handed to the port.
    @inlinable public func sent(packets: Int, bytes: UInt64) {
        add(Self.txPackets, UInt64(packets))
        add(Self.txBytes, bytes)
    }

    @inlinable public func dropped(_ reason: DropReason, _ n: Int = 1) {
        add(Self.firstDrop &+ reason.rawValue, UInt64(n))
    }

    /// Checksum and segmentation work done for frames handed to the port.
    @inlinable public func offloaded(_ counter: OffloadCounter, _ n: Int = 1) {
        add(Self.firstOffload &+ counter.rawValue, UInt64(n))
    }

    public var snapshot: CounterSnapshot {
        var drops: [DropReason: UInt64] = [:]
        for r in DropReason.allCases {
            let v = read(Self.firstDrop + r.rawValue)
            if v > 0 { drops[r] = v }
        }
        var offloads: [OffloadCounter: UInt64] = [:]
        for c in OffloadCounter.allCases {
            let v = read(Self.firstOffload + c.rawValue)
            if v > 0 { offloads[c] = v }
        }
        return CounterSnapshot(rxPackets: read(Self.rxPackets), rxBytes: read(Self.rxBytes),
                               txPackets: read(Self.txPackets), txBytes: read(Self.txBytes), drops: drops,
                               offloads: offloads)
    }
}

/// A copy of a queue's (or a port's summed) counters at one moment.
public struct CounterSnapshot: Equatable, Sendable {
    public var rxPackets: UInt64 = 0
    public var rxBytes: UInt64 = 0
    public var txPackets: UInt64 = 0
    public var txBytes: UInt64 = 0
    public var drops: [DropReason: UInt64] = [:]
    public var offloads: [OffloadCounter: UInt64] = [:]

    public init(rxPackets: UInt64 = 0, rxBytes: UInt64 = 0, txPackets: UInt64 = 0, txBytes: UInt64 = 0,
                drops: [DropReason: UInt64] = [:], offloads: [OffloadCounter: UInt64] = [:]) {
        self.rxPackets = rxPackets
        self.rxBytes = rxBytes
        self.txPackets = txPackets
        self.txBytes = txBytes
        self.drops = drops
        self.offloads = offloads
    }

    public var totalDrops: UInt64 { drops.values.reduce(0, +) }

    public static func + (a: Self, b: Self) -> Self {
        var r = a
        r.rxPackets += b.rxPackets
        r.rxBytes += b.rxBytes
        r.txPackets += b.txPackets
        r.txBytes += b.txBytes
        r.drops.merge(b.drops, uniquingKeysWith: +)
        r.offloads.merge(b.offloads, uniquingKeysWith: +)
        return r
    }
}
