import Model

/// The frame a switch sends for a guest that arrived on a new port after a live
/// migration (vhost-user.rst, SEND_RARP: "broadcast a fake RARP"): a RARP
/// request (RFC 903) from the guest's address to everyone, so the forwarding
/// databases of this switch and of every switch behind its uplinks learn the
/// address on its new port at once. It carries no IP address: RARP asks for one.
public enum ReverseARPAnnouncement {
    /// A minimum-size Ethernet frame without its FCS (IEEE 802.3 §3.2.7): 42 bytes padded to 60.
    public static let frameLength = 60
    /// EtherType of RARP (RFC 903).
    static let etherType: UInt16 = 0x8035
    /// "request reverse" (RFC 903).
    static let operationRequestReverse: UInt16 = 3

    /// Writes the announcement of `source` into the `frameLength` bytes at
    /// `frame`, byte by byte: it runs on the data path, which allocates nothing.
    public static func write(announcing source: MACAddress, into frame: UnsafeMutableRawPointer) {
        // SAFETY: the caller gives frameLength (60) bytes at `frame` (VhostPort allocated them so), and
        // every offset written below is a constant under 60 (the Ethernet header, then the 28-byte RARP
        // body).
        frame.initializeMemory(as: UInt8.self, repeating: 0, count: frameLength)
        func put(_ value: UInt8, at offset: Int) { frame.storeBytes(of: value, toByteOffset: offset, as: UInt8.self) }
        func put16(_ value: UInt16, at offset: Int) {
            put(UInt8(value >> 8), at: offset)
            put(UInt8(value & 0xff), at: offset + 1)
        }
        func putAddress(_ a: MACAddress, at offset: Int) {
            put(a.bytes.0, at: offset); put(a.bytes.1, at: offset + 1); put(a.bytes.2, at: offset + 2)
            put(a.bytes.3, at: offset + 3); put(a.bytes.4, at: offset + 4); put(a.bytes.5, at: offset + 5)
        }
        putAddress(.broadcast, at: 0)
        putAddress(source, at: 6)
        put16(etherType, at: 12)
        // ARP's layout (RFC 826): hardware Ethernet (1), protocol IPv4, 6- and 4-byte addresses.
        put16(1, at: 14)
        put16(0x0800, at: 16)
        put(6, at: 18)
        put(4, at: 19)
        put16(operationRequestReverse, at: 20)
        // Sender and target hardware address are both the guest's; both protocol addresses unknown (0).
        putAddress(source, at: 22)
        putAddress(source, at: 32)
    }
}
