import CFerry
import Glibc
import Model
import Platform

/// The remote VTEPs of one tunnel port, numbered from 1 (0 in a forwarding
/// database entry means "no endpoint": flood to every one): their addresses
/// as the underlay socket takes them, whether each is in the flood list, and
/// their counters.
///
/// The flood list is `remote=` for a static port; for an EVPN port it is what
/// type-3 routes say (`setFlooding`, control thread: a VTEP leaves the list
/// without leaving the table, since entries are never removed). A worker reads
/// each entry's flag relaxed: a flood that races a change reaches the VTEP or not.
///
/// Fixed capacity, allocated once. Entries are only ever appended, never
/// changed or removed, so a number stays valid for as long as the port
/// lives and an entry's address is read without a lock: the one writer (the
/// worker that receives for the port, when a new sender is learned; the
/// opener, for `remote=`) fills an entry and then publishes the count with a
/// release store; readers load the count acquiring and read only below it.
/// Counters: the rx pair has several writers (the worker receiving from the
/// port's socket and every worker pulling a queue of its `via=` uplink), so
/// each adds atomically, once per run of datagrams from one VTEP
/// (`VxlanPort.ReceiveBurst`); the tx pair one writer at a time (the worker
/// holding the port's transmit queue: the port has one, and a shared queue is
/// pushed under its lock), relaxed.
public final class TunnelEndpoints: @unchecked Sendable {
    /// Learned senders beyond this are refused (`vxlan_unknown_vtep`).
    public static let defaultCapacity = PortLimits.vxlanRemotes + 1

    public let capacity: Int
    /// Entries in the flood list now (`remote=`'s, or EVPN's type-3 VTEPs).
    // SAFETY: floodMembers is the one UInt32 init allocated.
    public var floodCount: Int { Int(ferry_load_relaxed_u32(floodMembers)) }
    /// Per entry: 1 while it is in the flood list.
    @usableFromInline let flooding: UnsafeMutablePointer<UInt32>
    @usableFromInline let floodMembers: UnsafeMutablePointer<UInt32>
    @usableFromInline let published: UnsafeMutablePointer<UInt32>
    @usableFromInline let highs: UnsafeMutablePointer<UInt64>
    @usableFromInline let lows: UnsafeMutablePointer<UInt64>
    /// Per entry, a sockaddr to send to (sockaddr_in6 room; port 0: a raw socket's).
    @usableFromInline let socketAddresses: UnsafeMutableRawPointer
    @usableFromInline let socketAddressLength: Int
    /// rx packets, rx bytes, tx packets, tx bytes per entry.
    @usableFromInline let counterSlots: UnsafeMutablePointer<UInt64>
    @usableFromInline static var nameStride: Int { MemoryLayout<sockaddr_in6>.size }
    @usableFromInline static var countersPerEntry: Int { 4 }
    public let isIPv6: Bool

    /// The table of a port on an `ipv6` (or IPv4) underlay, with `remotes` as
    /// the flood list, numbered 1... in order.
    public init(remotes: [InternetAddress], ipv6: Bool, capacity: Int = TunnelEndpoints.defaultCapacity) {
        precondition(remotes.count <= capacity && capacity < 1 << 14)
        self.capacity = capacity
        isIPv6 = ipv6
        // SAFETY: each fill covers exactly what was allocated just before it.
        published = .allocate(capacity: 1)
        published.initialize(to: 0)
        flooding = .allocate(capacity: capacity + 1)
        flooding.initialize(repeating: 0, count: capacity + 1)
        floodMembers = .allocate(capacity: 1)
        floodMembers.initialize(to: 0)
        // Index 0 is never used, so an entry's number is its index.
        highs = .allocate(capacity: capacity + 1)
        highs.initialize(repeating: 0, count: capacity + 1)
        lows = .allocate(capacity: capacity + 1)
        lows.initialize(repeating: 0, count: capacity + 1)
        socketAddresses = .allocate(byteCount: (capacity + 1) * Self.nameStride, alignment: 8)
        socketAddresses.initializeMemory(as: UInt8.self, repeating: 0, count: (capacity + 1) * Self.nameStride)
        socketAddressLength = ipv6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size
        counterSlots = .allocate(capacity: (capacity + 1) * Self.countersPerEntry)
        counterSlots.initialize(repeating: 0, count: (capacity + 1) * Self.countersPerEntry)
        for remote in remotes { setFlooding(Int(append(remote)), true) }
    }

    deinit {
        published.deallocate()
        flooding.deallocate()
        floodMembers.deallocate()
        highs.deallocate()
        lows.deallocate()
        socketAddresses.deallocate()
        counterSlots.deallocate()
    }

    /// Entries so far (numbers 1...count).
    // SAFETY: published is the one UInt32 init allocated.
    @inlinable
    public var count: Int { Int(ferry_load_acquire_u32(published)) }

    /// The number of `address`, or 0 when it is not in the table. Linear: a
    /// port has a handful of VTEPs, and the last one found is checked first by the caller.
    @inlinable
    public func number(of address: InternetAddress) -> UInt16 {
        // SAFETY: i runs 1...count and count <= capacity (append's guard), inside arrays of capacity +
        // 1 entries.
        let n = count
        var i = 1
        while i <= n {
            if highs[i] == address.high && lows[i] == address.low { return UInt16(truncatingIfNeeded: i) }
            i &+= 1
        }
        return 0
    }

    /// The writer only: adds `address` and returns its number, or 0 when the table is full.
    @inlinable
    public func append(_ address: InternetAddress) -> UInt16 {
        // SAFETY: published is the one UInt32 init allocated; the sockaddr slot of entry i <= capacity
        // has nameStride (sockaddr_in6) bytes, room for either family.
        let n = Int(ferry_load_relaxed_u32(published))
        guard n < capacity, address.isIPv6 == isIPv6 else { return 0 }
        let i = n &+ 1
        // SAFETY: i ≤ capacity, inside every array (capacity + 1 entries).
        highs[i] = address.high
        lows[i] = address.low
        address.writeSocketAddress(port: 0, to: socketAddresses + i &* Self.nameStride)
        ferry_store_release_u32(published, UInt32(i))
        return UInt16(truncatingIfNeeded: i)
    }

    /// Whether entry `number` (1...count) gets broadcast, multicast and unknown-unicast frames.
    // SAFETY: number is in 1...count <= capacity, inside the capacity + 1 flags: the vxlan port's
    // sends (socket or underlay) walk `max(first, 1)...last` with last <= count, tested per frame;
    // setFlooding and the reports check or walk 1...count.
    @inlinable
    public func floods(_ number: Int) -> Bool { ferry_load_relaxed_u32(flooding + number) != 0 }

    /// The writer only: puts entry `number` (1...count) in the flood list or takes it out.
    public func setFlooding(_ number: Int, _ on: Bool) {
        // SAFETY: number in 1...count (the precondition), count <= capacity: inside the capacity + 1
        // flags.
        precondition(number >= 1 && number <= count)
        guard floods(number) != on else { return }
        ferry_store_relaxed_u32(flooding + number, on ? 1 : 0)
        ferry_store_relaxed_u32(floodMembers, UInt32(floodCount + (on ? 1 : -1)))
    }

    /// The address of entry `number` (1...count).
    public func address(_ number: Int) -> InternetAddress {
        // SAFETY: number in 1...count <= capacity (the precondition): entry number's nameStride bytes
        // lie in socketAddresses.
        precondition(number >= 1 && number <= count)
        var storage = sockaddr_in6()
        withUnsafeMutableBytes(of: &storage) {
            $0.copyMemory(from: UnsafeRawBufferPointer(start: socketAddresses + number * Self.nameStride,
                                                       count: Self.nameStride))
        }
        return withUnsafeBytes(of: &storage) { InternetAddress(socketAddress: $0.baseAddress!)! }
    }

    /// Where a datagram for entry `number` goes (a sockaddr of `socketAddressLength` bytes).
    @inlinable
    public func socketAddress(_ number: Int) -> UnsafeMutableRawPointer {
        // SAFETY: number is in 1...count <= capacity: the vxlan port sends only to a frame's endpoint
        // it tested against count, or to 1...count for a flood.
        socketAddresses + number &* Self.nameStride
    }

    @inlinable
    func add(_ number: Int, _ slot: Int, _ value: UInt64) {
        // SAFETY: number in 1...count <= capacity (the sender tests it against count) and slot in
        // 2...3: inside the (capacity + 1) * 4 counters.
        let p = counterSlots + (number &* Self.countersPerEntry &+ slot)
        ferry_store_relaxed_u64(p, ferry_load_relaxed_u64(p) &+ value)
    }

    /// Any receiving worker: `packets` datagrams of `bytes` inner bytes in all from entry `number`.
    @inlinable
    public func received(from number: Int, packets: Int = 1, bytes: UInt64) {
        // SAFETY: as in `add`: number in 1...count <= capacity (the number append or number(of:)
        // gave the receiver), slots 0 and 1: inside the (capacity + 1) * 4 counters.
        let p = counterSlots + number &* Self.countersPerEntry
        ferry_fetch_add_relaxed_u64(p, UInt64(packets))
        ferry_fetch_add_relaxed_u64(p + 1, bytes)
    }

    /// The transmitting worker: `packets` datagrams of `bytes` inner bytes in all to entry `number`.
    @inlinable
    public func sent(to number: Int, packets: Int = 1, bytes: Int) {
        add(number, 2, UInt64(packets))
        add(number, 3, UInt64(bytes))
    }

    /// One entry's counters, for `ferry ctl show vteps` and metrics.
    public struct Counters: Equatable, Sendable {
        public var rxPackets: UInt64
        public var rxBytes: UInt64
        public var txPackets: UInt64
        public var txBytes: UInt64
    }

    public func counters(_ number: Int) -> Counters {
        // SAFETY: number in 1...count <= capacity (the precondition), so its 4 counters lie in
        // counterSlots.
        precondition(number >= 1 && number <= count)
        let p = counterSlots + number * Self.countersPerEntry
        return Counters(rxPackets: ferry_load_relaxed_u64(p), rxBytes: ferry_load_relaxed_u64(p + 1),
                        txPackets: ferry_load_relaxed_u64(p + 2), txBytes: ferry_load_relaxed_u64(p + 3))
    }
}
