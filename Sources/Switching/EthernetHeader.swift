import Packets

/// The fields of an Ethernet header the switch decides on, each loaded once.
///
/// Read from bytes the guest can no longer change (a private copy) or from a frame's
/// first segment; either way every decision about the frame is made from these values,
/// never from a second look at its bytes. Addresses are held as `Ethernet` describes:
/// the low 48 bits of a UInt64, first byte highest.
public struct EthernetHeader: Equatable, Sendable {
    public var destination: UInt64
    public var source: UInt64
    /// The EtherType, or the TPID of the frame's outer tag.
    public var etherType: UInt16

    @inlinable
    public init(destination: UInt64, source: UInt64, etherType: UInt16) {
        self.destination = destination
        self.source = source
        self.etherType = etherType
    }

    /// The header whose `Ethernet.headerSize` bytes start at `p`.
    @inlinable
    public init(at p: UnsafeRawPointer) {
        // SAFETY: the caller holds `Ethernet.headerSize` readable bytes at `p`: a frame it
        // checked is no runt, or the worker's gathered copy of one (Worker.classify).
        destination = UInt64(UInt32(bigEndian: p.loadUnaligned(as: UInt32.self))) << 16
            | UInt64(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt16.self)))
        source = UInt64(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 6, as: UInt16.self))) << 32
            | UInt64(UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        etherType = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: Ethernet.etherTypeOffset, as: UInt16.self))
    }

    /// Carries an 802.1Q (C-TAG) tag right after the addresses.
    @inlinable
    public var isTagged: Bool { etherType == Ethernet.tpidCustomerVLAN }

    /// Sent from a group address, which no station has (IEEE 802-2014 §8.2).
    @inlinable
    public var hasGroupSource: Bool { source & Ethernet.groupBit != 0 }

    /// The VLAN id of the tag of a tagged frame whose first `Ethernet.taggedHeaderSize`
    /// bytes start at `p` (the caller checked `isTagged` and the length).
    @inlinable
    public static func taggedVLAN(at p: UnsafeRawPointer) -> UInt16 {
        // SAFETY: the caller checked the length against `Ethernet.taggedHeaderSize` (PortIngress.admit).
        return UInt16(bigEndian: p.loadUnaligned(fromByteOffset: Ethernet.headerSize, as: UInt16.self)) & Ethernet.vlanIDMask
    }
}
