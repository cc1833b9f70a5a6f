/// How a port takes part in VLANs (IEEE 802.1Q).
///
/// An access port carries one VLAN untagged: frames from it enter that VLAN,
/// frames to it leave without a tag. A trunk carries several VLANs, each frame
/// with its 802.1Q tag, and untagged frames are not accepted on it — unless it
/// has a native VLAN, one of its VLANs that it carries untagged (Open vSwitch's
/// `vlan_mode=native-untagged`, a Linux bridge port's `pvid untagged` VLAN):
/// untagged frames from it enter that VLAN, frames of that VLAN leave it
/// untagged, and a frame tagged with that VLAN's id is accepted too. Inside the
/// switch every frame belongs to exactly one VLAN; tags are pushed and popped
/// at the ports, never by copying a frame.
public enum VLANMode: Equatable, Hashable, Sendable, CustomStringConvertible {
    case access(UInt16)
    /// `native`, when given, is one of the listed VLANs (`PortSpec` refuses any other).
    case trunk([UInt16], native: UInt16? = nil)

    /// The VLAN of a port with no VLAN option, as in a Linux bridge (default PVID 1).
    public static let defaultVLAN: UInt16 = 1
    /// VLAN ids a port may name: 0 means "priority tag only" and 4095 is reserved (802.1Q §9.6).
    public static let validIDs: ClosedRange<UInt16> = 1...4094

    public var vlans: [UInt16] {
        switch self {
        case .access(let v): [v]
        case .trunk(let list, _): list
        }
    }

    /// The VLAN an untagged frame from the port belongs to: an access port's, a
    /// trunk's native one; nil for a trunk without one (it refuses untagged frames).
    public var untaggedVLAN: UInt16? {
        switch self {
        case .access(let v): v
        case .trunk(_, let native): native
        }
    }

    public var isTrunk: Bool {
        if case .trunk = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .access(let v): "access \(v)"
        case .trunk(let list, let native):
            "trunk " + list.map(String.init).joined(separator: ",") + (native.map { " native \($0)" } ?? "")
        }
    }
}
