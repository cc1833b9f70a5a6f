/// What Ferry knows about an Ethernet frame's layout, in one place. Each value is a
/// computed `@inlinable` property, so the per-frame code of every module that reads one
/// folds it into a constant (a stored `static let` would be a call into this module).
///
/// A 48-bit address is held, where the data path compares addresses, in the low 48 bits of
/// a UInt64 with its first byte highest (`FDBKey`, the forwarding decision).
public enum Ethernet {
    /// Destination, source, EtherType (IEEE 802.3-2018 §3.1.1).
    @inlinable public static var headerSize: Int { 14 }
    /// Where the EtherType (or the TPID of a tag) sits: after the two addresses.
    @inlinable public static var etherTypeOffset: Int { 12 }
    /// An 802.1Q tag: TPID then TCI, inserted at `etherTypeOffset` (IEEE 802.1Q-2014 §9.3).
    @inlinable public static var tagSize: Int { 4 }
    /// The header with one tag: what a trunk port reads to learn a frame's VLAN.
    @inlinable public static var taggedHeaderSize: Int { headerSize + tagSize }

    /// The TPID of a customer VLAN tag, C-TAG (IEEE 802.1Q-2014 Table 9-1).
    @inlinable public static var tpidCustomerVLAN: UInt16 { 0x8100 }
    /// The TPID of a service VLAN tag, S-TAG (802.1ad; IEEE 802.1Q-2014 Table 9-1).
    @inlinable public static var tpidServiceVLAN: UInt16 { 0x88A8 }
    /// The VLAN identifier, the low 12 bits of the TCI (IEEE 802.1Q-2014 §9.6).
    @inlinable public static var vlanIDMask: UInt16 { 0x0FFF }

    /// The I/G bit, the least significant bit of an address's first byte, set in group
    /// addresses (broadcast among them; IEEE 802-2014 §8.2), as it sits in a UInt64-held address.
    @inlinable public static var groupBit: UInt64 { 1 << 40 }

    /// The first 44 bits of an IEEE 802.1D link-local group address, 01:80:C2:00:00:0N
    /// (802.1Q-2014 Table 8-1), as the top of a UInt64-held address shifted right by 4.
    @inlinable public static var linkLocalPrefix: UInt64 { 0x0180_C200_000 }

    /// Whether `destination` (the address in the low 48 bits, first byte highest) is
    /// 01:80:C2:00:00:0N, one of the addresses a port's `GroupForwardMask` speaks of.
    @inlinable
    public static func isLinkLocal(_ destination: UInt64) -> Bool { destination &>> 4 == linkLocalPrefix }
}
