import Packets

/// A GSO super-frame as a guest (or the kernel) hands it over: the headers
/// once, the whole payload after them, IP lengths for the whole frame, the L4
/// checksum field holding the pseudo-header sum over the whole L4 length (what
/// Linux's tcp_v4_send_check/udp4_hwcsum leave for the device), and the
/// virtio-net header that asks for segmentation at `segmentSize`.
public struct GSOTestFrame {
    public var bytes: [UInt8]
    public var header: VirtioNetHeader

    public enum Transport { case tcp, udp }

    /// - ipOptions: bytes appended to the IPv4 header (a multiple of 4).
    /// - tcpOptions: bytes appended to the TCP header (a multiple of 4).
    /// - tcpFlags: the TCP flags byte (ACK 0x10, PSH 0x08, FIN 0x01, CWR 0x80).
    /// - vlan: an 802.1Q tag after the MAC addresses.
    public init(transport: Transport = .tcp, ipv6: Bool = false, payloadLength: Int, segmentSize: Int,
                ipOptions: [UInt8] = [], tcpOptions: [UInt8] = [], tcpFlags: UInt8 = 0x18, vlan: UInt16? = nil,
                ecn: Bool = false, sequence: UInt32 = 0xFFFF_F000, identification: UInt16 = 0xFFF0) {
        precondition(ipOptions.count % 4 == 0 && tcpOptions.count % 4 == 0)
        let payload = (0..<payloadLength).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8 &+ 3) }
        let protocolNumber: UInt8 = transport == .tcp ? 6 : 17
        var l4: [UInt8]
        switch transport {
        case .tcp:
            let offset = UInt8((20 + tcpOptions.count) / 4) << 4
            l4 = [0xC3, 0x50, 0x14, 0x51] + bigEndianBytes(sequence) + [0x01, 0x02, 0x03, 0x04,
                  offset, tcpFlags, 0x7F, 0xFF, 0, 0, 0, 0] + tcpOptions
        case .udp:
            let length = 8 + payloadLength
            l4 = [0xC3, 0x50, 0x14, 0x51, UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length), 0, 0]
        }
        let l4Length = l4.count + payloadLength
        var network: [UInt8]
        var pseudo: [UInt8]
        if ipv6 {
            let source: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1]
            let destination: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [2]
            network = [0x60, 0x01, 0x23, 0x45] + bigEndianBytes(UInt16(l4Length)) + [protocolNumber, 64]
                + source + destination
            pseudo = source + destination + bigEndianBytes(UInt32(l4Length)) + [0, 0, 0, protocolNumber]
        } else {
            let headerLength = 20 + ipOptions.count
            let total = headerLength + l4Length
            network = [UInt8(0x40 | headerLength / 4), 0] + bigEndianBytes(UInt16(total)) + bigEndianBytes(identification)
                + [0x40, 0, 64, protocolNumber, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2] + ipOptions
            let sum = ~onesComplementSum(network[...])
            network[10] = UInt8(sum >> 8)
            network[11] = UInt8(sum & 0xFF)
            pseudo = [198, 18, 0, 1, 198, 18, 0, 2, 0, protocolNumber] + bigEndianBytes(UInt16(l4Length))
        }
        let pseudoSum = onesComplementSum(pseudo[...])
        let field = transport == .tcp ? 16 : 6
        l4[field] = UInt8(pseudoSum >> 8)
        l4[field + 1] = UInt8(pseudoSum & 0xFF)
        var ethernet: [UInt8] = [0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01]
        if let vlan { ethernet += [0x81, 0x00] + bigEndianBytes(vlan) }
        ethernet += ipv6 ? [0x86, 0xDD] : [0x08, 0x00]
        bytes = ethernet + network + l4 + payload
        let transportOffset = ethernet.count + network.count
        var type: UInt8 = transport == .udp ? VirtioNetHeader.gsoUDPL4
            : (ipv6 ? VirtioNetHeader.gsoTCPv6 : VirtioNetHeader.gsoTCPv4)
        if ecn { type |= VirtioNetHeader.gsoECN }
        header = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, gsoType: type,
                                 headerLength: UInt16(transportOffset + l4.count), segmentSize: UInt16(segmentSize),
                                 checksumStart: UInt16(transportOffset), checksumOffset: UInt16(field))
    }

    /// The 12-byte virtio-net header (num_buffers 0) followed by the frame: what a TAP's writer sends.
    public var tapWrite: [UInt8] {
        var out = [UInt8](repeating: 0, count: 12)
        out.withUnsafeMutableBytes { header.store(to: $0.baseAddress!) }
        return out + bytes
    }
}

public func bigEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    (0..<MemoryLayout<T>.size).reversed().map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
}

/// Checks every checksum of an Ethernet frame carrying IPv4 or IPv6 and TCP or
/// UDP (after at most one 802.1Q tag), with the plain RFC 1071 sum: nil when
/// all are right, otherwise what is wrong.
public func checksumProblem(in frame: [UInt8]) -> String? {
    var network = 14
    if frame[12] == 0x81 && frame[13] == 0x00 { network = 18 }
    let ipv6 = frame[network - 2] == 0x86 && frame[network - 1] == 0xDD
    let transport: Int
    let protocolNumber: UInt8
    var pseudo: [UInt8]
    if ipv6 {
        transport = network + 40
        protocolNumber = frame[network + 6]
        pseudo = Array(frame[(network + 8)..<(network + 40)]) + bigEndianBytes(UInt32(frame.count - transport))
            + [0, 0, 0, protocolNumber]
    } else {
        let ipHeaderLength = Int(frame[network] & 0x0F) * 4
        transport = network + ipHeaderLength
        if onesComplementSum(frame[network..<transport]) != 0xFFFF { return "IPv4 header checksum" }
        protocolNumber = frame[network + 9]
        pseudo = Array(frame[(network + 12)..<(network + 20)]) + [0, protocolNumber]
            + bigEndianBytes(UInt16(frame.count - transport))
    }
    if protocolNumber == 17 && frame[transport + 6] == 0 && frame[transport + 7] == 0 { return "UDP checksum 0" }
    if onesComplementSum(pseudo[...] + frame[transport...]) != 0xFFFF {
        return protocolNumber == 6 ? "TCP checksum" : "UDP checksum"
    }
    return nil
}
