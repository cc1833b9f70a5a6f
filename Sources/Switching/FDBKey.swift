import Model
import Packets

/// A forwarding-database key: a VLAN id and a MAC address packed into one
/// word, `vlan << 48 | mac`, so the table compares and hashes a single UInt64.
/// The MAC is the 48-bit big-endian value of its six bytes (first byte highest),
/// which is what a load of the frame's address bytes gives after a byte swap.
public struct FDBKey: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64

    /// VLAN ids are 12 bits (IEEE 802.1Q §9.6); a larger one is a bug of ours,
    /// since the parser never yields one.
    @inlinable
    public init(vlan: UInt16, mac: UInt64) {
        precondition(vlan < 4096, "VLAN id is 12 bits")
        rawValue = UInt64(vlan) << 48 | (mac & 0xFFFF_FFFF_FFFF)
    }

    @inlinable
    public init(vlan: UInt16, mac: MACAddress) {
        self.init(vlan: vlan, mac: mac.bits48)
    }

    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }

    @inlinable public var vlan: UInt16 { UInt16(truncatingIfNeeded: rawValue >> 48) }
    @inlinable public var mac: UInt64 { rawValue & 0xFFFF_FFFF_FFFF }

    public var macAddress: MACAddress {
        let m = mac
        return MACAddress(UInt8(truncatingIfNeeded: m >> 40), UInt8(truncatingIfNeeded: m >> 32),
                          UInt8(truncatingIfNeeded: m >> 24), UInt8(truncatingIfNeeded: m >> 16),
                          UInt8(truncatingIfNeeded: m >> 8), UInt8(truncatingIfNeeded: m))
    }

    public var description: String { "vlan \(vlan) \(macAddress)" }
}

extension MACAddress {
    /// The address as a 48-bit big-endian number (first byte in bits 40-47).
    @inlinable
    public var bits48: UInt64 {
        let b = bytes
        return UInt64(b.0) << 40 | UInt64(b.1) << 32 | UInt64(b.2) << 24
            | UInt64(b.3) << 16 | UInt64(b.4) << 8 | UInt64(b.5)
    }
}
