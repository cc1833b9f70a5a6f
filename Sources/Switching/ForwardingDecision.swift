import CFerry
import Packets

/// Where one frame goes.
public enum ForwardingDecision: Equatable, Sendable {
    /// To the one port its destination was learned on.
    case unicast(UInt16)
    /// To these ports: broadcast, multicast, or a destination not (or no longer) known.
    /// May be empty when the ingress port is the VLAN's only member.
    case flood(PortSet)
    /// The destination sits behind the ingress port; sending it back would be a
    /// hairpin (an 802.1Q bridge never transmits a frame on its reception port).
    case drop
}

/// Decides, per frame, between unicast, flood and drop from the forwarding
/// database and each VLAN's member ports.
///
/// `decide` is called by workers; membership is written by the control plane
/// (inside `Worker.whilePaused` in practice, though each VLAN's set is one
/// relaxed 64-bit store, so a concurrent reader sees the old or the new set).
/// Ingress VLAN filtering (is the ingress port a member at all?) is the caller's
/// job, before learning. Each worker counts its decisions in its own
/// `DecisionCounters`: shared counters would bounce a cache line between
/// workers on every frame, and lose increments.
public final class Forwarder: @unchecked Sendable {
    public static let vlanCount = 4096

    public let database: ForwardingDatabase
    @usableFromInline let members: UnsafeMutablePointer<UInt64>

    public init(database: ForwardingDatabase) {
        self.database = database
        members = .allocate(capacity: Self.vlanCount)
        members.initialize(repeating: 0, count: Self.vlanCount)
    }

    deinit { members.deallocate() }

    public func setMembers(_ ports: PortSet, vlan: UInt16) {
        precondition(vlan < 4096, "VLAN id is 12 bits")
        ferry_store_relaxed_u64(members + Int(vlan), ports.bits)
    }

    @inlinable
    public func members(vlan: UInt16) -> PortSet {
        // SAFETY: vlan is below 4096, checked by FDBKey or by the caller's tag parser.
        PortSet(bits: ferry_load_relaxed_u64(members + Int(vlan & Ethernet.vlanIDMask)))
    }

    /// The decision for a frame that arrived on `ingress` in `vlan` for `destination`
    /// (the 48-bit big-endian MAC, as in `FDBKey`), counted in `counters` (the
    /// caller's own).
    @inlinable
    public func decide(ingress: UInt16, vlan: UInt16, destination: UInt64, counters: DecisionCounters)
        -> ForwardingDecision
    {
        var endpoint: UInt16 = 0
        return decide(ingress: ingress, vlan: vlan, destination: destination, counters: counters, endpoint: &endpoint)
    }

    /// As `decide`, and for a unicast decision the remote tunnel endpoint the
    /// destination was learned behind in `endpoint` (0 for none, and for every
    /// other decision): a tunnel port sends the frame to that VTEP alone.
    @inlinable
    public func decide(ingress: UInt16, vlan: UInt16, destination: UInt64, counters: DecisionCounters,
                       endpoint: inout UInt16) -> ForwardingDecision
    {
        endpoint = 0
        let flood = members(vlan: vlan).removing(ingress)
        // Group addresses (broadcast among them) are never learned: flooded.
        if destination & Ethernet.groupBit == 0,
           let found = database.lookupWithEndpoint(FDBKey(vlan: vlan, mac: destination)) {
            let port = found.port
            if port == ingress {
                counters.bump(DecisionCounters.hairpin)
                return .drop
            }
            // An entry for a port that has since left the VLAN is as good as unknown.
            if members(vlan: vlan).contains(port) {
                counters.bump(DecisionCounters.unicast)
                endpoint = found.endpoint
                return .unicast(port)
            }
        }
        // A flood with nowhere to go is the caller's drop (no_destination), not a flood.
        if !flood.isEmpty { counters.bump(DecisionCounters.flooded) }
        return .flood(flood)
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
        slots = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64).bindMemory(to: UInt64.self, capacity: 8)
        slots.initialize(repeating: 0, count: 8)
    }

    deinit { slots.deallocate() }

    @inlinable
    func bump(_ slot: Int) {
        ferry_store_relaxed_u64(slots + slot, ferry_load_relaxed_u64(slots + slot) &+ 1)
    }

    /// Counts a decision the caller remembered instead of making it again
    /// (the next frame of the same flow in a burst).
    @inlinable
    public func countRepeated(unicast: Bool) {
        bump(unicast ? Self.unicast : Self.flooded)
    }

    /// Frames sent to one known port.
    public var unicastFrames: UInt64 { ferry_load_relaxed_u64(slots + Self.unicast) }
    /// Frames flooded (broadcast, multicast, unknown unicast).
    public var floodedFrames: UInt64 { ferry_load_relaxed_u64(slots + Self.flooded) }
    /// Frames dropped because their destination is behind the port they came in on.
    public var hairpinDrops: UInt64 { ferry_load_relaxed_u64(slots + Self.hairpin) }
}
