import CFerry
import Model
import Packets

// The forwarding database: (VLAN, MAC) → port, learned from source addresses.
//
// Layout. One table of `slotCount` slots (a power of two, at least twice the
// capacity, so the load factor never exceeds 1/2 and every probe ends at an
// empty slot), allocated once at init. A slot is 16 bytes:
//
//     +0  seq   UInt32   seqlock version: odd while the writer changes the slot
//     +4  port  UInt16
//     +6  flags UInt16   bit 0 occupied (0 = empty), bit 1 static, bits 2-15 the
//                        tunnel endpoint (0: none; a tunnel port's remote VTEP otherwise)
//     +8  key   UInt64   FDBKey.rawValue (vlan << 48 | mac)
//
// plus a parallel array `seen` (UInt64 per slot, the last time a frame from
// the key arrived), read only by the writer and by snapshots. Linear probing
// from a Fibonacci hash of the key; no allocation, lock or ARC traffic per
// learn or lookup.
//
// Concurrency. Exactly one thread writes (the control thread, which learns what workers queue: `learn`,
// `addStatic`, `remove`, `flush`, `age`); any number of threads read
// (`lookup`, `entries`, `counters`), and never block the writer.
//
// * Per-slot seqlock. The writer stores seq+1 (odd) with release, issues a
//   release fence (so the odd version is visible before any data store), stores
//   port/flags/key/seen relaxed, then stores seq+2 (even) with release. A reader
//   loads seq acquiring, retries while it is odd, loads the data relaxed, issues
//   an acquire fence and reloads seq; a changed version means the read may be
//   torn and is retried. So a reader only ever returns a (key, port) pair that
//   the writer stored together. Refreshing `seen` alone is a single relaxed store
//   outside the seqlock: readers of key/port don't look at it.
//
// * Deletion is backward-shift (Knuth 6.4 Algorithm R), not tombstones. The
//   table is never rebuilt (that would need a second table and a hand-over), so
//   tombstones would pile up under churn until every miss walks the whole table.
//   Backward shift keeps every probe chain as short as if the deleted key had
//   never been inserted. Its cost is that a live entry may move one or more slots
//   back while a reader is probing, and a reader could then step past it. A
//   global `shiftEpoch` (odd while a deletion shifts) guards against that: a
//   reader loads it before probing and, only on a miss, again after an acquire
//   fence; if a shift ran meanwhile it probes again (a few times, then reports
//   the miss, which only costs one flooded frame). A hit needs no check: the
//   slot's seqlock already vouches for the pair. During a shift an entry is copied
//   to its new slot before its old slot is overwritten, so it is always in one.
//
// * Versions wrap after 2^31 writes to one slot; a reader would have to stall
//   across exactly that many writes to be fooled.
//
// Tunnel endpoints. An entry on a tunnel port (vxlan) says which remote VTEP
// behind that port the address lives at, in the flags' spare bits: the slot
// stays 16 bytes and one seqlock read still gives port and endpoint together,
// so a lookup costs what it did for every port. Learning treats another
// endpoint on the same port as a move.
//
// Time comes from the caller (`now`, in seconds of a monotonic clock, read
// once per burst by the worker), so tests drive it by hand.

/// What `learn` did with a source address.
public enum LearnResult: Equatable, Sendable {
    /// A new entry.
    case learned
    /// The entry was there on the same port; its age was reset.
    case refreshed
    /// The address moved here from another port.
    case moved(from: PortIndex)
    /// A static entry holds the key; learning never overrides it.
    case heldByStatic
    /// No room: the table holds `capacity` entries. The address stays unknown (and floods).
    case overflow
    /// A group (multicast or broadcast) source address, which is never learned: only
    /// individual addresses identify a station. Such a frame is malformed.
    case groupAddress
}

/// One change the writer made: `key` now leads to `port`, or (nil) is gone.
/// Learning, moves and static entries give a port; removal, aging and
/// flushing give nil. For mirrors of the table outside it (an uplink's
/// steering map), which follow it on the writer's thread.
public struct FDBChange: Hashable, Sendable {
    public var key: FDBKey
    public var port: PortIndex?

    public init(key: FDBKey, port: PortIndex?) {
        self.key = key
        self.port = port
    }
}

/// The changes the writer made since the last `take()`, for one reader
/// (`ForwardingDatabase.subscribeToChanges`). Writer's thread only.
public final class FDBChangeLog {
    @usableFromInline var pending: [FDBChange] = []

    init() {}

    public var isEmpty: Bool { pending.isEmpty }

    /// The changes, oldest first, and an empty list from here.
    public func take() -> [FDBChange] {
        defer { pending = [] }
        return pending
    }
}

/// One entry as a snapshot sees it.
public struct FDBEntry: Equatable, Sendable {
    public var key: FDBKey
    public var port: PortIndex
    public var isStatic: Bool
    /// Seconds since a frame from the address was last seen (0 for static entries).
    public var age: UInt64
    /// The remote tunnel endpoint behind `port` (a vxlan port's VTEP number), 0 for none.
    public var endpoint: UInt16
    /// A static entry behind a remote VTEP: a control plane's (EVPN), which yields to learning elsewhere.
    public var isPinnedRemote: Bool { isStatic && endpoint != 0 }

    public init(key: FDBKey, port: PortIndex, isStatic: Bool, age: UInt64, endpoint: UInt16 = 0) {
        self.key = key
        self.port = port
        self.isStatic = isStatic
        self.age = age
        self.endpoint = endpoint
    }
}

/// The database's counters at one moment.
public struct FDBCounters: Equatable, Sendable {
    public var entries: UInt64 = 0
    public var learned: UInt64 = 0
    public var moves: UInt64 = 0
    public var overflows: UInt64 = 0
    public var aged: UInt64 = 0

    public init(entries: UInt64 = 0, learned: UInt64 = 0, moves: UInt64 = 0, overflows: UInt64 = 0,
                aged: UInt64 = 0) {
        self.entries = entries
        self.learned = learned
        self.moves = moves
        self.overflows = overflows
        self.aged = aged
    }
}

public final class ForwardingDatabase: @unchecked Sendable {
    public static let defaultCapacity = SwitchOptions.defaultFDBCapacity
    public static let defaultAgingTime = SwitchOptions.defaultAgingTime

    @usableFromInline static let slotStride = 16
    @usableFromInline static let portOffset = 4
    @usableFromInline static let flagsOffset = 6
    @usableFromInline static let keyOffset = 8
    @usableFromInline static let occupied: UInt16 = 1
    @usableFromInline static let staticFlag: UInt16 = 2
    /// The flags' bits below the endpoint number.
    @usableFromInline static let endpointShift: UInt16 = 2
    /// Tunnel endpoints one port can name in an entry (14 bits, 0 meaning none).
    public static let endpointLimit = 1 << 14
    /// Probes a reader repeats after a concurrent shift, and spins it waits on one odd slot,
    /// before it gives up and reports a miss (one flooded frame) rather than stall a
    /// worker behind a writer that was preempted mid-write.
    @usableFromInline static let readerRetries = 16
    @usableFromInline static let slotSpins = 1024

    // Counter indexes; the writer alone stores them (relaxed), anyone reads.
    @usableFromInline static let cEntries = 0
    @usableFromInline static let cLearned = 1
    @usableFromInline static let cMoves = 2
    @usableFromInline static let cOverflows = 3
    @usableFromInline static let cAged = 4
    @usableFromInline static let counterCount = 5

    /// Most entries the table holds; a learn beyond it is dropped and counted.
    public let capacity: Int
    /// Seconds after which an entry nobody refreshed is removed by `age(now:)`.
    public let agingTime: UInt64
    /// Slots in the table (a power of two ≥ 2 × capacity).
    public let slotCount: Int

    @usableFromInline let mask: Int
    @usableFromInline let hashShift: UInt64
    @usableFromInline let slots: UnsafeMutableRawPointer
    @usableFromInline let seen: UnsafeMutablePointer<UInt64>
    @usableFromInline let stats: UnsafeMutablePointer<UInt64>
    /// Odd while a deletion shifts entries; see the comment at the top of the file.
    @usableFromInline let shiftEpoch: UnsafeMutablePointer<UInt32>
    /// Writer-only: where the next `age(now:)` call resumes.
    @usableFromInline var ageCursor = 0
    /// Slots per block of `blockOccupancy` (a power of two).
    @usableFromInline static let blockSlots = 64
    @usableFromInline static let blockShift = 6
    /// Writer-only: how many occupied slots each block of `blockSlots` holds, kept by
    /// `write`. `age` passes a block with none at one look: a sweep of the default
    /// table read its 2 MiB of slots, 0.4-1 ms cold from memory once a second with
    /// a handful of entries (docs/PERFORMANCE.md, "Session 9: every slow reply
    /// accounted for"); a sparse table's sweep now reads 4 KiB of counts.
    @usableFromInline let blockOccupancy: UnsafeMutablePointer<UInt16>
    /// Writer-only mirror of the entry count.
    @usableFromInline var count = 0
    /// What the writer changed since the last `takeChanges()`, in order; nil
    /// (nothing kept) unless a mirror of the table asked (`recordChanges`).
    @usableFromInline var changes: [FDBChange]?
    /// Further readers of the changes (an EVPN port's mirror), each with its own list.
    @usableFromInline var changeLogs: [FDBChangeLog] = []

    public init(capacity: Int = ForwardingDatabase.defaultCapacity,
                agingTime: UInt64 = ForwardingDatabase.defaultAgingTime) {
        precondition(capacity > 0 && capacity <= 1 << 24, "capacity out of range")
        self.capacity = capacity
        self.agingTime = agingTime
        var size = 2
        while size < capacity * 2 { size <<= 1 }
        slotCount = size
        mask = size - 1
        hashShift = UInt64(64 - size.trailingZeroBitCount)
        // SAFETY: each fill covers exactly what the allocation before it made (size * slotStride
        // bytes, size seen times, counterCount counters, one epoch).
        slots = .allocate(byteCount: size * Self.slotStride, alignment: 64)
        slots.initializeMemory(as: UInt8.self, repeating: 0, count: size * Self.slotStride)
        seen = .allocate(capacity: size)
        seen.initialize(repeating: 0, count: size)
        stats = .allocate(capacity: Self.counterCount)
        stats.initialize(repeating: 0, count: Self.counterCount)
        shiftEpoch = .allocate(capacity: 1)
        shiftEpoch.initialize(to: 0)
        // SAFETY: fills exactly the blocks it allocates: one per blockSlots slots, at least one.
        let blocks = max(1, size >> Self.blockShift)
        blockOccupancy = .allocate(capacity: blocks)
        blockOccupancy.initialize(repeating: 0, count: blocks)
    }

    deinit {
        slots.deallocate()
        seen.deallocate()
        stats.deallocate()
        shiftEpoch.deallocate()
        blockOccupancy.deallocate()
    }

    // MARK: - Slots

    @inlinable
    func home(_ key: UInt64) -> Int {
        // Fibonacci hashing: the high bits of key × 2^64/φ spread VLAN and MAC bits alike.
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> hashShift)
    }

    @inlinable
    func slot(_ i: Int) -> UnsafeMutableRawPointer {
        // SAFETY: i < slotCount, the table's length in slots: every index comes from `home`
        // (its top log2(slotCount) hash bits), is stepped with `& mask`, or walks below
        // slotCount (flush, entries), so the 16 bytes at the result lie inside `slots`.
        slots + i &* Self.slotStride
    }

    @inlinable
    func bump(_ counter: Int, _ n: UInt64 = 1) {
        // SAFETY: counter is one of the cEntries...cAged constants, all below counterCount, the length of
        // `stats`.
        ferry_store_relaxed_u64(stats + counter, ferry_load_relaxed_u64(stats + counter) &+ n)
    }

    @inlinable
    func drop(_ counter: Int) {
        // SAFETY: as in bump: counter < counterCount.
        ferry_store_relaxed_u64(stats + counter, ferry_load_relaxed_u64(stats + counter) &- 1)
    }

    /// Writer only: replaces a slot's contents under its seqlock.
    @inlinable
    func write(_ i: Int, key: UInt64, port: PortIndex, flags: UInt16, seen time: UInt64) {
        // SAFETY: i < slotCount (see `slot`): p is a whole 16-byte slot, so port (+4, 2 bytes), flags (+6, 2)
        // and key (+8, 8) lie inside it, and `seen` holds slotCount times; the atomics' offsets are aligned
        // to their sizes because slots are 64-byte aligned and 16 bytes apart.
        let p = slot(i)
        // SAFETY: i >> blockShift < max(1, slotCount >> blockShift), the blocks init allocated, as i < slotCount.
        if (ferry_load_relaxed_u16(p + Self.flagsOffset) ^ flags) & Self.occupied != 0 {
            let block = blockOccupancy + (i &>> Self.blockShift)
            block.pointee = flags & Self.occupied != 0 ? block.pointee &+ 1 : block.pointee &- 1
        }
        let version = ferry_load_acquire_u32(p)
        ferry_store_release_u32(p, version &+ 1)
        // Orders the odd version before the data stores below: a reader that sees
        // any of them (then fences acquiring) sees the version change.
        ferry_fence_release()
        ferry_store_relaxed_u16(p + Self.portOffset, port.rawValue)
        ferry_store_relaxed_u16(p + Self.flagsOffset, flags)
        ferry_store_relaxed_u64(p + Self.keyOffset, key)
        ferry_store_relaxed_u64(seen + i, time)
        // Release: the data stores above are visible before the even version.
        ferry_store_release_u32(p, version &+ 2)
    }

    /// Reader: a consistent (flags, port, key) of slot i, and its last-seen time when
    /// `withSeen` asks for it (a line of its own: the data path never does), or nil
    /// when the writer kept the slot odd or changing through every spin (it was
    /// preempted mid-write). The one seqlock read every reader goes through.
    @inlinable
    func read(_ i: Int, withSeen: Bool = false) -> (flags: UInt16, port: PortIndex, key: UInt64, seen: UInt64)? {
        // SAFETY: as in `write`: i < slotCount, so every offset lies in slot i and `seen + i` in `seen`.
        let p = slot(i)
        for _ in 0 ..< Self.slotSpins {
            let before = ferry_load_acquire_u32(p)
            if before & 1 != 0 {
                ferry_cpu_relax()
                continue
            }
            let flags = ferry_load_relaxed_u16(p + Self.flagsOffset)
            let port = PortIndex(ferry_load_relaxed_u16(p + Self.portOffset))
            let key = ferry_load_relaxed_u64(p + Self.keyOffset)
            let last = withSeen ? ferry_load_relaxed_u64(seen + i) : 0
            // Keeps the data loads above before the version reload below.
            ferry_fence_acquire()
            if ferry_load_acquire_u32(p) == before { return (flags, port, key, last) }
        }
        return nil
    }

    // MARK: - Lookup (any thread)

    /// The port that the key's MAC was last seen on in its VLAN, or nil: unknown
    /// (flood). Also nil, rarely, when the writer kept changing what this lookup
    /// probed (see `Probe.contended`); flooding is then the safe answer.
    @inlinable
    public func lookup(_ key: FDBKey) -> PortIndex? {
        if case .found(let port, _, _, _) = probe(key.rawValue) { return port }
        return nil
    }

    /// As `lookup`, with the entry's tunnel endpoint (0 for none): the same one read.
    @inlinable
    public func lookupWithEndpoint(_ key: FDBKey) -> (port: PortIndex, endpoint: UInt16)? {
        if case .found(let port, _, _, let endpoint) = probe(key.rawValue) { return (port, endpoint) }
        return nil
    }

    /// Reader side of learning. True when `key` is already known on `port`
    /// behind tunnel endpoint `endpoint` (0 for a port that is no tunnel)
    /// (its age is reset here, by a relaxed store of `now`) or is pinned by a
    /// static entry; false when the writer must learn it: unknown, or seen on
    /// another port (a move). Workers call it for every frame's source and
    /// queue only the false answers for the writer, so a steady flow never
    /// writes the table, and a worker never waits for the writer.
    ///
    /// The age store may race with a deletion shifting the slot; the worst
    /// outcome is one entry aging a little early or late.
    @inlinable
    public func refresh(_ key: FDBKey, port: PortIndex, endpoint: UInt16 = 0, now: UInt64) -> Bool {
        // SAFETY: i is the slot `probe` found the key in, so i < slotCount and `seen + i` lies in `seen`.
        guard case .found(let known, let i, let isStatic, let knownEndpoint) = probe(key.rawValue) else { return false }
        // A static entry behind a VTEP (EVPN's) yields to the address showing up on another port.
        if isStatic { return knownEndpoint == 0 || known == port }
        guard known == port && knownEndpoint == endpoint else { return false }
        // Skipping the store when the second has not changed keeps the line clean.
        if ferry_load_relaxed_u64(seen + i) != now { ferry_store_relaxed_u64(seen + i, now) }
        return true
    }

    @usableFromInline
    enum Probe: Equatable {
        case found(port: PortIndex, slot: Int, isStatic: Bool, endpoint: UInt16)
        /// Definitely not in the table at some instant during the call.
        case absent
        /// The writer was mid-write on a slot, or shifting entries, for longer than
        /// the reader waits (`slotSpins`, `readerRetries`): no answer.
        case contended
    }

    @inlinable
    func probe(_ k: UInt64) -> Probe {
        // SAFETY: shiftEpoch is the one UInt32 init allocated; slot indexes stay below slotCount (`home`, `&
        // mask`).
        var epoch = ferry_load_acquire_u32(shiftEpoch)
        for _ in 0 ..< Self.readerRetries {
            var i = home(k)
            probe: for _ in 0 ... mask {
                guard let s = read(i) else { return .contended }
                if s.flags == 0 { break probe }
                if s.key == k {
                    return .found(port: s.port, slot: i, isStatic: s.flags & Self.staticFlag != 0,
                                  endpoint: s.flags &>> Self.endpointShift)
                }
                i = (i &+ 1) & mask
            }
            // A miss is only trusted if no deletion shifted entries during the probe.
            ferry_fence_acquire()
            let after = ferry_load_acquire_u32(shiftEpoch)
            if after == epoch && epoch & 1 == 0 { return .absent }
            epoch = after
            ferry_cpu_relax()
        }
        return .contended
    }

    @inlinable
    public func lookup(vlan: UInt16, mac: UInt64) -> PortIndex? { lookup(FDBKey(vlan: vlan, mac: mac)) }

    // MARK: - Learning (the writer)

    /// Records that a frame from `key` arrived on `port` (behind its tunnel
    /// endpoint `endpoint`, 0 for none) at `now`.
    @inlinable
    @discardableResult
    public func learn(_ key: FDBKey, port: PortIndex, endpoint: UInt16 = 0, now: UInt64) -> LearnResult {
        // SAFETY: i starts at `home(k)` and steps with `& mask`, so it stays below slotCount: p is a whole
        // slot (offsets as in `write`) and `seen + i` lies in `seen`.
        let k = key.rawValue
        precondition(Int(endpoint) < Self.endpointLimit, "tunnel endpoint numbers are 14 bits")
        let learnedFlags = Self.occupied | (endpoint &<< Self.endpointShift)
        // The I/G bit, least significant bit of the first byte (IEEE 802-2014 §8.2).
        if k & Ethernet.groupBit != 0 { return .groupAddress }
        var i = home(k)
        // Ends: the table is at most half full, so there is always an empty slot.
        while true {
            let p = slot(i)
            let flags = ferry_load_relaxed_u16(p + Self.flagsOffset)
            if flags == 0 {
                guard count < capacity else {
                    bump(Self.cOverflows)
                    return .overflow
                }
                write(i, key: k, port: port, flags: learnedFlags, seen: now)
                count &+= 1
                bump(Self.cEntries)
                bump(Self.cLearned)
                noteChange(FDBChange(key: key, port: port))
                return .learned
            }
            if ferry_load_relaxed_u64(p + Self.keyOffset) == k {
                let old = PortIndex(ferry_load_relaxed_u16(p + Self.portOffset))
                // A static entry holds, except one behind a remote VTEP (a control plane's, EVPN)
                // when the address shows up on another port: the station moved here (RFC 7432 §15),
                // and the control plane hears of it from this learned entry.
                if flags & Self.staticFlag != 0 && (flags &>> Self.endpointShift == 0 || old == port) {
                    return .heldByStatic
                }
                if old == port && flags == learnedFlags {
                    ferry_store_relaxed_u64(seen + i, now)
                    return .refreshed
                }
                write(i, key: k, port: port, flags: learnedFlags, seen: now)
                bump(Self.cMoves)
                noteChange(FDBChange(key: key, port: port))
                return .moved(from: old)
            }
            i = (i &+ 1) & mask
        }
    }

    @inlinable
    @discardableResult
    public func learn(vlan: UInt16, mac: UInt64, port: PortIndex, now: UInt64) -> LearnResult {
        learn(FDBKey(vlan: vlan, mac: mac), port: port, now: now)
    }

    /// Writer only: the slot holding `k`, or nil.
    @usableFromInline
    func find(_ k: UInt64) -> Int? {
        // SAFETY: i starts at `home(k)` and steps with `& mask`: below slotCount, so the offsets lie in slot
        // i.
        var i = home(k)
        while true {
            let p = slot(i)
            if ferry_load_relaxed_u16(p + Self.flagsOffset) == 0 { return nil }
            if ferry_load_relaxed_u64(p + Self.keyOffset) == k { return i }
            i = (i &+ 1) & mask
        }
    }

    /// Pins `key` to `port` (behind tunnel endpoint `endpoint`, 0 for none):
    /// never aged, never moved by learning, except that one behind an endpoint
    /// (EVPN's remote address) yields when the address is learned on another
    /// port, where the station has moved. Replaces a learned entry for the
    /// key. False (and counted as an overflow) when the table is full.
    @discardableResult
    public func addStatic(_ key: FDBKey, port: PortIndex, endpoint: UInt16 = 0) -> Bool {
        // SAFETY: the probe starts at `home(k)` and steps with `& mask`: slot indexes below slotCount.
        precondition(Int(endpoint) < Self.endpointLimit, "tunnel endpoint numbers are 14 bits")
        let k = key.rawValue
        let flags = Self.occupied | Self.staticFlag | (endpoint &<< Self.endpointShift)
        if let i = find(k) {
            write(i, key: k, port: port, flags: flags, seen: 0)
            noteChange(FDBChange(key: key, port: port))
            return true
        }
        guard count < capacity else {
            bump(Self.cOverflows)
            return false
        }
        var i = home(k)
        while ferry_load_relaxed_u16(slot(i) + Self.flagsOffset) != 0 { i = (i &+ 1) & mask }
        write(i, key: k, port: port, flags: flags, seen: 0)
        count &+= 1
        bump(Self.cEntries)
        noteChange(FDBChange(key: key, port: port))
        return true
    }

    /// Removes `key` if it is a static entry on `port` behind a VTEP (a
    /// control plane's remote address), and nothing else: the address may have
    /// been learned here since. False when no such entry was there.
    @discardableResult
    public func removePinnedRemote(_ key: FDBKey, port: PortIndex) -> Bool {
        // SAFETY: i is a slot `find` returned, below slotCount: the offsets lie in slot i.
        guard let i = find(key.rawValue) else { return false }
        let p = slot(i)
        let flags = ferry_load_relaxed_u16(p + Self.flagsOffset)
        guard flags & Self.staticFlag != 0, flags &>> Self.endpointShift != 0,
              ferry_load_relaxed_u16(p + Self.portOffset) == port.rawValue else { return false }
        delete(at: i)
        return true
    }

    /// Removes `key`, static or learned. False when it was not there.
    @discardableResult
    public func remove(_ key: FDBKey) -> Bool {
        guard let i = find(key.rawValue) else { return false }
        delete(at: i)
        return true
    }

    /// Removes every learned entry on `port` (a port went away, or `ferry ctl fdb flush`)
    /// and/or in `vlan` (nil: any); static ones too when `includingStatic`. Walks the
    /// whole table: control-plane use only.
    @discardableResult
    public func flush(port: PortIndex? = nil, vlan: UInt16? = nil, includingStatic: Bool = false) -> Int {
        // SAFETY: the walk stays below slotCount (the loop's test), so the offsets lie in slot i.
        var removed = 0
        var i = 0
        while i < slotCount {
            let p = slot(i)
            let flags = ferry_load_relaxed_u16(p + Self.flagsOffset)
            if flags != 0, port.map({ ferry_load_relaxed_u16(p + Self.portOffset) == $0.rawValue }) ?? true,
               vlan.map({ FDBKey(rawValue: ferry_load_relaxed_u64(p + Self.keyOffset)).vlan == $0 }) ?? true,
               includingStatic || flags & Self.staticFlag == 0 {
                delete(at: i)
                removed += 1
                continue  // a later entry may have shifted into slot i
            }
            i += 1
        }
        return removed
    }

    /// Removes up to `budget` slots' worth of expired learned entries, resuming
    /// where the previous call stopped, so a caller can spread a sweep over time
    /// with bounded cost. A whole sweep takes `slotCount / budget` calls; a block
    /// of `blockSlots` slots with no entry counts whole and costs one look. Returns
    /// how many entries it removed.
    @discardableResult
    public func age(now: UInt64, budget: Int = 256) -> Int {
        // SAFETY: ageCursor and i step with `& mask` (ageCursor starts at 0): below slotCount, the length of
        // the table and of `seen`.
        var removed = 0
        var examined = 0
        var i = ageCursor
        while examined < budget {
            // SAFETY: i < slotCount, so its block is one init allocated (see `write`).
            if i & (Self.blockSlots &- 1) == 0 && blockOccupancy[i &>> Self.blockShift] == 0 {
                examined += Self.blockSlots
                i = (i &+ Self.blockSlots) & mask
                continue
            }
            examined += 1
            let p = slot(i)
            let flags = ferry_load_relaxed_u16(p + Self.flagsOffset)
            if flags & (Self.occupied | Self.staticFlag) == Self.occupied {
                let last = seen[i]
                if now >= last && now - last >= agingTime {
                    delete(at: i)
                    bump(Self.cAged)
                    removed += 1
                    continue  // re-examine slot i: a later entry may have shifted into it
                }
            }
            i = (i &+ 1) & mask
        }
        ageCursor = i
        return removed
    }

    /// Backward-shift deletion (Knuth 6.4 Algorithm R): walk the cluster after the
    /// hole and pull back every entry whose home does not lie cyclically in
    /// (hole, its slot], so no probe chain crosses an empty slot.
    @usableFromInline
    func delete(at start: Int) {
        // SAFETY: start is a slot `find` or a walk below slotCount gave; j steps with `& mask`; shiftEpoch is
        // the one UInt32 init allocated: every slot, `seen` and epoch access stays inside what init
        // allocated.
        noteChange(FDBChange(key: FDBKey(rawValue: ferry_load_relaxed_u64(slot(start) + Self.keyOffset)), port: nil))
        let epoch = ferry_load_acquire_u32(shiftEpoch)
        // Release: the odd epoch is ordered before the first slot write's version
        // store, so a reader that observes any moved slot sees the epoch change.
        ferry_store_release_u32(shiftEpoch, epoch &+ 1)
        var hole = start
        var j = start
        while true {
            j = (j &+ 1) & mask
            let p = slot(j)
            let flags = ferry_load_relaxed_u16(p + Self.flagsOffset)
            if flags == 0 { break }
            let key = ferry_load_relaxed_u64(p + Self.keyOffset)
            let h = home(key)
            let stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j)
            if stays { continue }
            // Copy first, then the old slot becomes the new hole: the entry is always findable.
            write(hole, key: key, port: PortIndex(ferry_load_relaxed_u16(p + Self.portOffset)), flags: flags, seen: seen[j])
            hole = j
        }
        write(hole, key: 0, port: 0, flags: 0, seen: 0)
        count &-= 1
        drop(Self.cEntries)
        ferry_store_release_u32(shiftEpoch, epoch &+ 2)
    }

    @inlinable
    func noteChange(_ change: FDBChange) {
        changes?.append(change)
        for log in changeLogs { log.pending.append(change) }
    }

    /// A list of every change from now on, for one more reader; writer's thread only.
    public func subscribeToChanges() -> FDBChangeLog {
        let log = FDBChangeLog()
        changeLogs.append(log)
        return log
    }

    /// `log` is no longer kept. Writer's thread only.
    public func unsubscribe(_ log: FDBChangeLog) {
        changeLogs.removeAll { $0 === log }
    }

    /// From now on keep a list of changes for `takeChanges()`. Writer's thread only.
    public func recordChanges() {
        if changes == nil { changes = [] }
    }

    /// Stops keeping the list (its last reader went away) and drops what it held. Writer's thread only.
    public func stopRecordingChanges() { changes = nil }

    /// Whether the writer changed anything since the last `takeChanges()`.
    public var hasChanges: Bool { changes?.isEmpty == false }

    /// The changes since the last call, oldest first. Writer's thread only.
    public func takeChanges() -> [FDBChange] {
        guard let list = changes, !list.isEmpty else { return [] }
        changes = []
        return list
    }

    // MARK: - Control plane (any thread)

    public var counters: FDBCounters {
        // SAFETY: the c... constants are all below counterCount, the length of `stats`.
        FDBCounters(entries: ferry_load_relaxed_u64(stats + Self.cEntries),
                    learned: ferry_load_relaxed_u64(stats + Self.cLearned),
                    moves: ferry_load_relaxed_u64(stats + Self.cMoves),
                    overflows: ferry_load_relaxed_u64(stats + Self.cOverflows),
                    aged: ferry_load_relaxed_u64(stats + Self.cAged))
    }

    /// Every entry, for `ferry ctl show fdb`. Allocates; never call it on the data
    /// path. While the writer runs the list is not one instant: an entry changed
    /// meanwhile may appear in its old or new state (never torn), and one that a
    /// deletion shifted past the walk may be missed until the next call.
    public func entries(now: UInt64) -> [FDBEntry] {
        var byKey: [UInt64: FDBEntry] = [:]
        for i in 0 ..< slotCount {
            guard let s = read(i, withSeen: true), s.flags != 0 else { continue }
            let isStatic = s.flags & Self.staticFlag != 0
            byKey[s.key] = FDBEntry(key: FDBKey(rawValue: s.key), port: s.port, isStatic: isStatic,
                                    age: isStatic || now < s.seen ? 0 : now - s.seen,
                                    endpoint: s.flags &>> Self.endpointShift)
        }
        return byKey.values.sorted { $0.key.rawValue < $1.key.rawValue }
    }
}
