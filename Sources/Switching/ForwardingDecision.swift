import CFerry
import Model
import Packets

/// Where one frame goes.
public enum ForwardingDecision: Equatable, Sendable {
    /// To the one port its destination was learned on.
    case unicast(PortIndex)
    /// To every other member of its VLAN (`Forwarder.floodSet`): broadcast,
    /// multicast, or a destination not (or no longer) known. The set is the
    /// VLAN's and the ingress port's alone, so the decision carries no set: a
    /// burst gathers one only when its frames go to several ports.
    case flood
    /// Nowhere: a flood in a VLAN whose only member is the ingress port.
    case noDestination
    /// The destination sits behind the ingress port; sending it back would be a
    /// hairpin (an 802.1Q bridge never transmits a frame on its reception port).
    case drop
}

/// Decides, per frame, between unicast, flood and drop from the forwarding
/// database and each VLAN's member ports.
///
/// `decide` is called by workers; membership is written by the control plane
/// while every worker is parked (`Bridge.apply` inside `WorkerGroup.whilePaused`):
/// a VLAN's set is several words and a count, which a running reader could see
/// half-written. The sets are stored word-major (every VLAN's word 0, then
/// every VLAN's word 1, ...): a switch of up to 64 ports reads only the first
/// 32 KiB, as when a set was one word, and `wordsInUse` tells readers where
/// the ports end. Ingress VLAN filtering (is the ingress port a member at
/// all?) is the caller's job, before learning. Each worker counts its
/// decisions in its own `DecisionCounters`: shared counters would bounce a
/// cache line between workers on every frame, and lose increments.
public final class Forwarder: @unchecked Sendable {
    public static let vlanCount = 4096

    public let database: ForwardingDatabase
    @usableFromInline let members: UnsafeMutablePointer<UInt64>
    @usableFromInline let memberCounts: UnsafeMutablePointer<UInt16>
    /// Words of a set that hold any member of any VLAN: readers look at no more.
    public private(set) var wordsInUse = 0

    public init(database: ForwardingDatabase) {
        self.database = database
        // SAFETY: each fill covers exactly the count allocated just before it.
        members = .allocate(capacity: Self.vlanCount * PortSet.wordCount)
        members.initialize(repeating: 0, count: Self.vlanCount * PortSet.wordCount)
        memberCounts = .allocate(capacity: Self.vlanCount)
        memberCounts.initialize(repeating: 0, count: Self.vlanCount)
    }

    deinit {
        members.deallocate()
        memberCounts.deallocate()
    }

    /// Word `w` of `vlan`'s member set (`w` < `wordsInUse` for any member).
    @inlinable
    public func memberWord(_ w: Int, vlan: UInt16) -> UnsafeMutablePointer<UInt64> {
        // SAFETY: the VLAN id is masked to 12 bits and every caller keeps w < PortSet.wordCount
        // (a loop to wordCount or wordsInUse, or a port below maxPorts shifted by 6), so the
        // word lies in the vlanCount * wordCount words init allocated.
        members + (w &* Self.vlanCount &+ Int(vlan & Ethernet.vlanIDMask))
    }

    public func setMembers(_ ports: PortSet, vlan: UInt16) {
        precondition(vlan < 4096, "VLAN id is 12 bits")
        for w in 0..<PortSet.wordCount { memberWord(w, vlan: vlan).pointee = ports.word(w) }
        // SAFETY: vlan < 4096 (the precondition above), the length of memberCounts.
        memberCounts[Int(vlan)] = UInt16(ports.count)
        wordsInUse = max(wordsInUse, ports.wordsInUse)
    }

    public func members(vlan: UInt16) -> PortSet {
        var set = PortSet()
        for w in 0..<wordsInUse { set.words[w] = memberWord(w, vlan: vlan).pointee }
        return set
    }

    /// Whether `port` is a member of `vlan`: one load.
    @inlinable
    public func contains(_ port: PortIndex, vlan: UInt16) -> Bool {
        let p = port.rawValue
        return Int(p) < PortSet.maxPorts && memberWord(Int(p &>> 6), vlan: vlan).pointee & (1 &<< UInt64(p & 63)) != 0
    }

    /// How many ports `vlan` has.
    // SAFETY: the VLAN id is masked to 12 bits, below vlanCount, the length of memberCounts.
    @inlinable
    public func memberCount(vlan: UInt16) -> Int { Int(memberCounts[Int(vlan & Ethernet.vlanIDMask)]) }

    /// The ports a frame from `ingress` in `vlan` is flooded to.
    public func floodSet(ingress: PortIndex, vlan: UInt16) -> PortSet { members(vlan: vlan).removing(ingress) }

    /// How many ports a flood from `ingress` in `vlan` reaches.
    @inlinable
    public func floodCount(ingress: PortIndex, vlan: UInt16) -> Int {
        memberCount(vlan: vlan) &- (contains(ingress, vlan: vlan) ? 1 : 0)
    }

    /// The lowest member of `vlan` other than `ingress`; nil when there is none.
    @inlinable
    public func firstMember(vlan: UInt16, besides ingress: PortIndex) -> PortIndex? {
        var w = 0
        while w < wordsInUse {
            var bits = memberWord(w, vlan: vlan).pointee
            if w == Int(ingress.rawValue &>> 6) { bits &= ~(1 &<< UInt64(ingress.rawValue & 63)) }
            if bits != 0 { return PortIndex(truncating: w &* 64 &+ bits.trailingZeroBitCount) }
            w &+= 1
        }
        return nil
    }

    /// ORs `vlan`'s members into the first `wordsInUse` words at `set`.
    @inlinable
    public func addMembers(vlan: UInt16, into set: UnsafeMutablePointer<UInt64>) {
        // SAFETY: w < wordsInUse <= PortSet.wordCount, the length of the caller's set (a worker's burst
        // bitmap) and of each VLAN's row in `members`.
        var w = 0
        while w < wordsInUse {
            set[w] |= memberWord(w, vlan: vlan).pointee
            w &+= 1
        }
    }

    /// The decision for a frame that arrived on `ingress` in `vlan` for `destination`
    /// (the 48-bit big-endian MAC, as in `FDBKey`), counted in `counters` (the
    /// caller's own).
    @inlinable
    public func decide(ingress: PortIndex, vlan: UInt16, destination: UInt64, counters: DecisionCounters)
        -> ForwardingDecision
    {
        var endpoint: UInt16 = 0
        return decide(ingress: ingress, vlan: vlan, destination: destination, counters: counters, endpoint: &endpoint)
    }

    /// As `decide`, and for a unicast decision the remote tunnel endpoint the
    /// destination was learned behind in `endpoint` (0 for none, and for every
    /// other decision): a tunnel port sends the frame to that VTEP alone.
    @inlinable
    public func decide(ingress: PortIndex, vlan: UInt16, destination: UInt64, counters: DecisionCounters,
                       endpoint: inout UInt16) -> ForwardingDecision
    {
        endpoint = 0
        // Group addresses (broadcast among them) are never learned: flooded.
        if destination & Ethernet.groupBit == 0,
           let found = database.lookupWithEndpoint(FDBKey(vlan: vlan, mac: destination)) {
            let port = found.port
            if port == ingress {
                counters.bump(DecisionCounters.hairpin)
                return .drop
            }
            // An entry for a port that has since left the VLAN is as good as unknown.
            if contains(port, vlan: vlan) {
                counters.bump(DecisionCounters.unicast)
                endpoint = found.endpoint
                return .unicast(port)
            }
        }
        // A flood with nowhere to go is the caller's drop (no_destination), not a flood.
        if floodCount(ingress: ingress, vlan: vlan) == 0 { return .noDestination }
        counters.bump(DecisionCounters.flooded)
        return .flood
    }
}

/// How many frames one worker sent to one port, flooded, or held back as
/// hairpins. The worker is the only writer (relaxed stores); anyone reads.
public final class DecisionCounters: @unchecked Sendable {
    @usableFromInline static let unicast = 0
    @usableFromInline static let flooded = 1
    @usableFromInline static let hairpin = 2
    @usableFromInline let slots: UnsafeMutablePointer<UInt64>

    public init() {
        // A cache line of its own, so two workers' counters never share one.
        // SAFETY: 64 fresh bytes, aligned, are exactly 8 UInt64s: bound and then filled as such.
        slots = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64).bindMemory(to: UInt64.self, capacity: 8)
        slots.initialize(repeating: 0, count: 8)
    }

    deinit { slots.deallocate() }

    @inlinable
    func bump(_ slot: Int) {
        // SAFETY: slot is one of unicast/flooded/hairpin (0...2), inside the 8 counters init allocated.
        ferry_store_relaxed_u64(slots + slot, ferry_load_relaxed_u64(slots + slot) &+ 1)
    }

    /// Counts a decision the caller remembered instead of making it again
    /// (the next frame of the same flow in a burst).
    @inlinable
    public func countRepeated(unicast: Bool) {
        bump(unicast ? Self.unicast : Self.flooded)
    }

    /// Frames sent to one known port.
    // SAFETY: the three indexes (0...2) lie inside the 8 counters init allocated.
    public var unicastFrames: UInt64 { ferry_load_relaxed_u64(slots + Self.unicast) }
    /// Frames flooded (broadcast, multicast, unknown unicast).
    public var floodedFrames: UInt64 { ferry_load_relaxed_u64(slots + Self.flooded) }
    /// Frames dropped because their destination is behind the port they came in on.
    public var hairpinDrops: UInt64 { ferry_load_relaxed_u64(slots + Self.hairpin) }
}
