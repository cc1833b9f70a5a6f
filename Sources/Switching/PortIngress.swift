import Model
import Packets

/// What became of a frame at its ingress port: admitted into a VLAN, or dropped for a reason.
public enum IngressVerdict: Equatable, Sendable {
    case admitted(vlan: UInt16)
    case dropped(DropReason)
}

/// How one port admits frames: its VLAN mode as the data path reads it, and which
/// link-local group addresses it lets through (`GroupForwardMask.forwarded`).
///
/// The ingress rules (IEEE 802.1Q-2014 §8.6.1 and §8.6.2): an access port admits untagged
/// frames into its VLAN and refuses tagged ones; a trunk admits a tagged frame only for a
/// VLAN it is a member of, and an untagged frame only into its native VLAN, if it has one.
/// A frame from a group address is no station's and is refused on every port.
public struct PortIngress: Equatable, Sendable {
    public let isTrunk: Bool
    /// The VLAN of an untagged frame from the port: an access port's, a trunk's native
    /// one; 0 for a trunk without one (it refuses untagged frames).
    public let untaggedVLAN: UInt16
    /// Bit N set: a frame to 01:80:C2:00:00:0N coming in here is forwarded.
    public let linkLocalForwarded: UInt16

    public init(vlan: VLANMode, groupForwardMask: GroupForwardMask = .none) {
        isTrunk = vlan.isTrunk
        untaggedVLAN = vlan.untaggedVLAN ?? 0
        linkLocalForwarded = groupForwardMask.forwarded
    }

    /// The VLAN a frame of `length` bytes (at least `Ethernet.headerSize`) coming in on
    /// port `port` belongs to, or why it is dropped. `header` was read from `p`, which holds
    /// `Ethernet.taggedHeaderSize` bytes or the whole frame if it is shorter; only a tagged
    /// frame on a trunk is read past the Ethernet header. `members` answers which ports
    /// each VLAN has.
    @inlinable
    public func admit(_ header: EthernetHeader, at p: UnsafeRawPointer, length: Int, port: PortIndex,
                      members: Forwarder) -> IngressVerdict {
        let vlan: UInt16
        if header.isTagged {
            guard isTrunk else { return .dropped(.vlanFiltered) }
            guard length >= Ethernet.taggedHeaderSize else { return .dropped(.runt) }
            vlan = EthernetHeader.taggedVLAN(at: p)
            // Ingress filtering (802.1Q §8.6.2): the port must be a member of the frame's VLAN.
            guard members.contains(port, vlan: vlan) else { return .dropped(.vlanFiltered) }
        } else {
            vlan = untaggedVLAN
            guard vlan != 0 else { return .dropped(.vlanFiltered) }
        }
        if header.hasGroupSource { return .dropped(.invalidSource) }
        return .admitted(vlan: vlan)
    }

    /// Whether a frame to `destination` that came in here is held back as link-local: an
    /// IEEE 802.1D link-local group address whose bit this port does not set.
    @inlinable
    public func holdsBack(linkLocal destination: UInt64) -> Bool {
        Ethernet.isLinkLocal(destination)
            && linkLocalForwarded & (1 &<< UInt16(truncatingIfNeeded: destination & 0xF)) == 0
    }
}
