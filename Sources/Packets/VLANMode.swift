/// How a port takes part in VLANs (IEEE 802.1Q).
///
/// An access port carries one VLAN untagged: frames from it enter that VLAN,
/// frames to it leave without a tag. A trunk carries several VLANs, each frame
/// with its 802.1Q tag, and untagged frames are not accepted on it. Inside the
/// switch every frame belongs to exactly one VLAN; tags are pushed and popped
/// at the ports, never by copying a frame.
public enum VLANMode: Equatable, Hashable, Sendable, CustomStringConvertible {
    case access(UInt16)
    case trunk([UInt16])

    /// The VLAN of a port with no VLAN option, as in a Linux bridge (default PVID 1).
    public static let defaultVLAN: UInt16 = 1
    /// VLAN ids a port may name: 0 means "priority tag only" and 4095 is reserved (802.1Q §9.6).
    public static let validIDs: ClosedRange<UInt16> = 1...4094

    public var vlans: [UInt16] {
        switch self {
        case .access(let v): [v]
        case .trunk(let list): list
        }
    }

    public var isTrunk: Bool {
        if case .trunk = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .access(let v): "access \(v)"
        case .trunk(let list): "trunk " + list.map(String.init).joined(separator: ",")
        }
    }
}
