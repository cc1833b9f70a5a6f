/// What Ferry knows about VXLAN framing (RFC 7348 §5), in one place: the
/// 8-byte header after the outer UDP header, and the outer headers' sizes a
/// tunnel port budgets for.
///
///     0      1      2      3      4      5      6      7
///     flags  reserved (24 bits)   VNI (24 bits)         reserved
///
/// Only the I flag (0x08) has a meaning: the VNI is valid. A receiver
/// ignores the reserved bits (§5); a packet without the I flag is dropped.
public enum VXLAN {
    /// The VXLAN header: flags, reserved, VNI, reserved.
    @inlinable public static var headerSize: Int { 8 }
    /// The UDP header before it.
    @inlinable public static var udpHeaderSize: Int { 8 }
    /// The I flag: "the VNI is valid" (RFC 7348 §5).
    @inlinable public static var validVNIFlag: UInt8 { 0x08 }
    /// IPv4 and IPv6 headers without options or extension headers.
    @inlinable public static var ipv4HeaderSize: Int { 20 }
    @inlinable public static var ipv6HeaderSize: Int { 40 }
    /// The source ports the flow hash picks from: the dynamic range RFC 7348 §5 recommends.
    @inlinable public static var sourcePortBase: UInt16 { 49_152 }

    /// What the outer headers add to an inner frame (its Ethernet header
    /// included) on an underlay of `ipVersion`: 36 bytes over IPv4, 56 over
    /// IPv6. An underlay MTU of M carries inner frames of M − this.
    @inlinable
    public static func overhead(ipv6: Bool) -> Int {
        (ipv6 ? ipv6HeaderSize : ipv4HeaderSize) &+ udpHeaderSize &+ headerSize
    }

    /// Writes the header for `vni` at `p`: I flag, reserved bits zero.
    @inlinable
    public static func writeHeader(vni: UInt32, at p: UnsafeMutableRawPointer) {
        // SAFETY: the caller's buffer has room for the 8-byte header at p: VxlanPort writes it into a
        // send slot after the UDP header, inside the encapsulation it reserved in front of the inner
        // frame.
        p.storeBytes(of: (UInt32(validVNIFlag) << 24).bigEndian, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: (vni << 8).bigEndian, toByteOffset: 4, as: UInt32.self)
    }

    /// Why a datagram that reached a VXLAN socket carries no frame for the port.
    public enum Refusal: Error, Equatable, Sendable {
        /// The I flag is clear: the VNI field means nothing.
        case validFlagClear
        /// Shorter than the VXLAN header plus an inner Ethernet header.
        case truncated
        /// A VNI this port does not carry.
        case unknownVNI(UInt32)
    }

    /// The inner frame of a datagram of `length` bytes at `p` (the UDP
    /// payload) for a port of `vni`: its offset and length, or why there is none.
    @inlinable
    public static func innerFrame(of p: UnsafeRawPointer, length: Int, vni: UInt32)
        -> Result<(offset: Int, length: Int), Refusal>
    {
        // SAFETY: the length test first: the 8 header bytes read lie inside the `length` received at p.
        if length < headerSize &+ Ethernet.headerSize { return .failure(.truncated) }
        if p.load(as: UInt8.self) & validVNIFlag == 0 { return .failure(.validFlagClear) }
        let found = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self)) >> 8
        if found != vni { return .failure(.unknownVNI(found)) }
        return .success((headerSize, length &- headerSize))
    }

    /// One step of the flow hash (FNV-1a over words); a function of its own, not a closure
    /// over `hash`, which an unoptimized build would box on the heap.
    @inlinable
    static func mix(_ hash: inout UInt64, _ v: UInt64) { hash = (hash ^ v) &* 0x0000_0100_0000_01B3 }

    /// The outer UDP source port for an inner frame of `length` bytes at `p`
    /// (contiguous): a hash of its addresses, and for IPv4 and IPv6 of its IP
    /// addresses and TCP/UDP ports (RFC 7348 §5), so a fabric's ECMP spreads
    /// flows and keeps each flow on one path. Always in the dynamic range.
    @inlinable
    public static func sourcePort(frame p: UnsafeRawPointer, length: Int) -> UInt16 {
        // SAFETY: the frame holds `length` >= Ethernet.headerSize bytes (VxlanPort hashes frames
        // `gather` wrote, which refuses runts, or segments the segmenter cut, headers included), so the
        // first 14 bytes are there; every read past them is tested against `length` first (the tag, the
        // IPv4/IPv6 header, the four bytes of ports).
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        mix(&hash, p.loadUnaligned(as: UInt64.self))
        mix(&hash, UInt64(p.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        var offset = Ethernet.etherTypeOffset
        var etherType = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
        if etherType == Ethernet.tpidCustomerVLAN && length >= Ethernet.taggedHeaderSize {
            offset &+= Ethernet.tagSize
            etherType = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
        }
        let l3 = offset &+ 2
        var protocolNumber: UInt8 = 0
        var l4 = 0
        if etherType == 0x0800 && length >= l3 &+ ipv4HeaderSize {
            let ihl = Int(p.load(fromByteOffset: l3, as: UInt8.self) & 0x0F) &* 4
            mix(&hash, p.loadUnaligned(fromByteOffset: l3 &+ 12, as: UInt64.self))
            protocolNumber = p.load(fromByteOffset: l3 &+ 9, as: UInt8.self)
            // A fragment after the first carries no ports.
            let fragment = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: l3 &+ 6, as: UInt16.self)) & 0x1FFF
            l4 = fragment == 0 && ihl >= ipv4HeaderSize ? l3 &+ ihl : 0
        } else if etherType == 0x86DD && length >= l3 &+ ipv6HeaderSize {
            var a = l3 &+ 8
            while a < l3 &+ 40 {
                mix(&hash, p.loadUnaligned(fromByteOffset: a, as: UInt64.self))
                a &+= 8
            }
            protocolNumber = p.load(fromByteOffset: l3 &+ 6, as: UInt8.self)
            l4 = l3 &+ ipv6HeaderSize
        }
        // TCP or UDP, the ports inside the frame.
        if (protocolNumber == 6 || protocolNumber == 17) && l4 != 0 && length >= l4 &+ 4 {
            mix(&hash, UInt64(p.loadUnaligned(fromByteOffset: l4, as: UInt32.self)) | UInt64(protocolNumber) << 32)
        }
        let folded = UInt32(truncatingIfNeeded: hash ^ (hash >> 32))
        return sourcePortBase | UInt16(truncatingIfNeeded: (folded ^ (folded >> 16)) & 0x3FFF)
    }
}
