/// Where the headers of a GSO super-frame lie and how it is to be cut, read
/// from the frame's own headers and checked against its virtio-net header.
///
/// hdr_len is only a hint (Linux guests write the length of their linear
/// buffer there, which may include payload): the layout comes from parsing the
/// Ethernet, 802.1Q, IP and TCP/UDP headers, and hdr_len only has to lie
/// inside the frame.
public struct GSOFrameLayout: Equatable, Sendable {
    public enum Transport: Equatable, Sendable { case tcp, udp }

    /// Where the IP header starts (after the MAC addresses and any 802.1Q/802.1ad tags).
    public var networkOffset: Int
    /// Where the TCP or UDP header starts.
    public var transportOffset: Int
    /// Where the payload starts: every segment repeats the bytes before it.
    public var headerLength: Int
    public var isIPv6: Bool
    public var transport: Transport
    /// Payload bytes per segment (gso_size).
    public var segmentSize: Int
    /// Payload bytes of the whole frame.
    public var payloadLength: Int

    /// Segments the frame is cut into (at least one).
    @inlinable
    public var segmentCount: Int {
        payloadLength == 0 ? 1 : (payloadLength &+ segmentSize &- 1) / segmentSize
    }

    /// Longest payload a GSO frame may carry after its headers (an IPv4 total
    /// length or IPv6 payload length is 16 bits).
    public static let maxPayload = 65535
    /// Longest header run parsed: two tags, IPv4 with 40 bytes of options, TCP with 40.
    public static let maxHeaderLength = Ethernet.headerSize + 2 * Ethernet.tagSize + 60 + 60

    // EtherTypes (IEEE 802.3) and IP protocol numbers (IANA); the tags' TPIDs are `Ethernet`'s.
    @usableFromInline static let etherTypeIPv4: UInt16 = 0x0800
    @usableFromInline static let etherTypeIPv6: UInt16 = 0x86DD
    @usableFromInline static let protocolTCP: UInt8 = 6
    @usableFromInline static let protocolUDP: UInt8 = 17

    public init(networkOffset: Int, transportOffset: Int, headerLength: Int, isIPv6: Bool, transport: Transport,
                segmentSize: Int, payloadLength: Int) {
        self.networkOffset = networkOffset
        self.transportOffset = transportOffset
        self.headerLength = headerLength
        self.isIPv6 = isIPv6
        self.transport = transport
        self.segmentSize = segmentSize
        self.payloadLength = payloadLength
    }

    /// Parses the first `available` bytes of a `frameLength`-byte frame (the
    /// caller's private copy: at least the headers, or the whole frame if it is
    /// shorter than `maxHeaderLength`) against its virtio-net `header`.
    @inlinable
    public init(header: VirtioNetHeader, prefix: UnsafeRawPointer, available: Int, frameLength: Int)
        throws(SegmentationError)
    {
        let kind = header.gsoType & ~VirtioNetHeader.gsoECN
        let ecn = header.gsoType & VirtioNetHeader.gsoECN != 0
        let wantIPv6: Bool
        let wantTransport: Transport
        switch kind {
        case VirtioNetHeader.gsoTCPv4: (wantIPv6, wantTransport) = (false, .tcp)
        case VirtioNetHeader.gsoTCPv6: (wantIPv6, wantTransport) = (true, .tcp)
        case VirtioNetHeader.gsoUDPL4 where !ecn: (wantIPv6, wantTransport) = (false, .udp)
        default: throw .unsupportedType(header.gsoType)
        }
        if header.segmentSize == 0 { throw .segmentSizeZero }
        if Int(header.headerLength) > frameLength { throw .headersPastFrame }
        if header.flags & VirtioNetHeader.needsChecksum != 0 {
            let start = Int(header.checksumStart)
            // Both 16-bit: no overflow. The field's two bytes must lie in the frame.
            if start >= frameLength || start &+ Int(header.checksumOffset) &+ 2 > frameLength {
                throw .checksumOffsetPastFrame
            }
        }
        // SAFETY: every read below is tested first against `limit`, the bytes the caller copied to
        // `prefix` that belong to the frame: the EtherType against offset + 2, the IPv4/IPv6 fields
        // against network + 20/40 (and the IP header length), the TCP data offset against
        // transportStart + 20; the IP length at network + 2 or + 4 lies inside the network header
        // checked above.
        let limit = min(available, frameLength)

        // Ethernet: up to two tags between the MAC addresses and the EtherType.
        var offset = 12
        var etherType: UInt16 = 0
        var tags = 0
        while true {
            guard offset &+ 2 <= limit else { throw .headersPastFrame }
            etherType = UInt16(bigEndian: prefix.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            offset &+= 2
            guard etherType == Ethernet.tpidCustomerVLAN || etherType == Ethernet.tpidServiceVLAN, tags < 2 else { break }
            offset &+= 2
            tags &+= 1
        }
        let network = offset
        let ipv6: Bool
        let transportStart: Int
        let protocolNumber: UInt8
        switch etherType {
        case Self.etherTypeIPv4:
            guard network &+ 20 <= limit else { throw .headersPastFrame }
            let versionAndLength = prefix.load(fromByteOffset: network, as: UInt8.self)
            guard versionAndLength >> 4 == 4 else { throw .notTCPOrUDP }
            let ipHeaderLength = Int(versionAndLength & 0x0F) &* 4
            guard ipHeaderLength >= 20 else { throw .inconsistentIPLength }
            guard network &+ ipHeaderLength <= limit else { throw .headersPastFrame }
            ipv6 = false
            transportStart = network &+ ipHeaderLength
            protocolNumber = prefix.load(fromByteOffset: network &+ 9, as: UInt8.self)
        case Self.etherTypeIPv6:
            guard network &+ 40 <= limit else { throw .headersPastFrame }
            guard prefix.load(fromByteOffset: network, as: UInt8.self) >> 4 == 6 else { throw .notTCPOrUDP }
            ipv6 = true
            transportStart = network &+ 40
            // Extension headers are not followed: a next header other than TCP/UDP is refused below.
            protocolNumber = prefix.load(fromByteOffset: network &+ 6, as: UInt8.self)
        default:
            throw .notTCPOrUDP
        }
        // USO names no IP version: either carries it.
        if wantTransport == .tcp && ipv6 != wantIPv6 { throw .notTCPOrUDP }

        let end: Int
        switch (wantTransport, protocolNumber) {
        case (.tcp, Self.protocolTCP):
            guard transportStart &+ 20 <= limit else { throw .headersPastFrame }
            let dataOffset = Int(prefix.load(fromByteOffset: transportStart &+ 12, as: UInt8.self) >> 4) &* 4
            guard dataOffset >= 20 else { throw .inconsistentIPLength }
            end = transportStart &+ dataOffset
        case (.udp, Self.protocolUDP):
            end = transportStart &+ 8
        default:
            throw .notTCPOrUDP
        }
        guard end <= limit else { throw .headersPastFrame }
        let payload = frameLength &- end
        if payload > Self.maxPayload { throw .tooLong }

        let ipLength = Int(UInt16(bigEndian: prefix.loadUnaligned(fromByteOffset: network &+ (ipv6 ? 4 : 2),
                                                                   as: UInt16.self)))
        let expected = frameLength &- network &- (ipv6 ? 40 : 0)
        if ipLength != expected { throw .inconsistentIPLength }

        self.init(networkOffset: network, transportOffset: transportStart, headerLength: end, isIPv6: ipv6,
                  transport: wantTransport, segmentSize: Int(header.segmentSize), payloadLength: payload)
    }
}
