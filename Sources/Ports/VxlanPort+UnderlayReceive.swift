import Model
import Packets

/// A vxlan port's datagrams that arrived on its `xdp:` uplink (`via=`): the
/// steering program redirects UDP to the port's local address and UDP port to
/// the uplink's AF_XDP sockets, the uplink sets those frames apart
/// (`XdpPort.tunnelFrames`), and the worker that pulled them hands them here
/// (Engine's Worker+Tunnels.swift). The outer Ethernet, IP and UDP headers are
/// read and checked here; the rest is the socket path's decoder (`admit`),
/// with its refusals, and the inner frame goes into the batch by reference
/// into the uplink's UMEM frame, released with the uplink's pull. Counted on
/// the port's queue 1 + q for the uplink's queue q (`counters(queue:)`): each
/// has one writer, the worker pulling that uplink queue.
///
/// The kernel's UDP socket verifies a datagram's checksum; here it is done
/// for it: a non-zero outer UDP checksum must be right (RFC 768; over IPv6,
/// RFC 8200 §8.1 and RFC 7348 §5), or the datagram is dropped as
/// `vxlan_bad_checksum`. A zero one is taken over IPv4 (no checksum) and over
/// IPv6 too, as the socket path takes it (UDP_NO_CHECK6_RX, RFC 6935/6936:
/// tunnels may leave it zero), and so is an unfinished one from a sender on
/// this host (`udpChecksumHolds`). A sender is never numbered here (the
/// socket path is the table's writer): a port without `remote=` and without
/// EVPN is not steered (Switch.wireUnderlays), its datagrams keep coming
/// through the kernel.
extension VxlanPort {
    /// Takes the frames of `frames` (from the uplink's queue `queue`) addressed
    /// to this port's local address and UDP port into `batch` (their inner
    /// frames), each checked; returns how many were its own.
    // SAFETY: each frame's one segment is `length` bytes of a UMEM frame (the uplink's pull
    // checked it against the descriptor); outerHeaders reads within it, the payload lies in it.
    @inlinable
    public func decapsulate(underlay frames: PacketBatch, queue: Int, into batch: PacketBatch) -> Int {
        let counters = underlayCounters[queue]
        var burst = ReceiveBurst()
        var claimed = 0
        for f in 0..<frames.count {
            if batch.room == 0 || batch.freeSegments == 0 { break }
            // The uplink appends each frame as one segment of its UMEM frame.
            let base = frames.segmentBase(frames.segments(of: f).lowerBound)
            let length = frames.length(of: f)
            guard let (sender, udp, payload) = outerHeaders(of: base, length: length) else { continue }
            claimed &+= 1
            guard payload.length >= 0 else {
                counters.dropped(.vxlanTruncated)
                continue
            }
            if !udpChecksumHolds(base, udp: udp, datagramLength: VXLAN.udpHeaderSize &+ payload.length) {
                counters.dropped(.vxlanBadChecksum)
                continue
            }
            admit(base + payload.offset, length: payload.length, from: sender, numbering: false, burst: &burst,
                  token: frames.token(of: f), into: batch, counters: counters)
        }
        burst.count(on: counters, endpoints: endpoints)
        return claimed
    }

    /// Whether the UDP checksum of the `datagramLength`-byte datagram at `udp`
    /// in the frame at `p` is zero (none), right (the sum over the
    /// pseudo-header — the addresses, protocol 17, the UDP length — and the
    /// datagram is all ones), or unfinished: the pseudo-header's sum alone,
    /// which a sender on this host leaves for its device to finish (a veth
    /// peer with checksum offload hands it on so; the kernel takes such a
    /// packet as CHECKSUM_PARTIAL, and so must Ferry). A corrupted datagram
    /// passes that test as rarely as the checksum itself (one field value in 65,536).
    // SAFETY: outerHeaders checked the IP and UDP headers and udp + datagramLength against the
    // frame's length; the addresses lie in the IP header before `udp`.
    @inlinable
    func udpChecksumHolds(_ p: UnsafeMutableRawPointer, udp: Int, datagramLength: Int) -> Bool {
        let field = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: udp &+ 6, as: UInt16.self))
        if field == 0 { return true }
        // Source then destination: 8 bytes ending the IPv4 header, 32 ending the IPv6 one.
        let addressBytes = local.isIPv6 ? 32 : 8
        var pseudo = UInt32(ChecksumCompletion.onesComplementSum(p + (udp &- addressBytes), count: addressBytes))
        pseudo &+= 17 &+ UInt32(datagramLength)
        var sum = pseudo &+ UInt32(ChecksumCompletion.onesComplementSum(p + udp, count: datagramLength))
        while sum >> 16 != 0 { sum = (sum & 0xFFFF) &+ (sum >> 16) }
        if sum == 0xFFFF { return true }
        while pseudo >> 16 != 0 { pseudo = (pseudo & 0xFFFF) &+ (pseudo >> 16) }
        return UInt32(field) == pseudo
    }

    /// The sender, the UDP header's offset and the UDP payload (offset, length;
    /// length -1 when the UDP length overruns the frame) of a frame that is a UDP datagram to this
    /// port's local address and UDP port, IPv4 without options or IPv6 without
    /// extension headers, after at most one 802.1Q tag; nil for any other frame.
    // SAFETY: every load is at an offset the guard before it checked against `length` (the
    // Ethernet header, ≥ 14 bytes, checked by the uplink; a tag; IP + UDP headers).
    @inlinable
    func outerHeaders(of p: UnsafeMutableRawPointer, length: Int)
        -> (sender: InternetAddress, udp: Int, payload: (offset: Int, length: Int))?
    {
        var l3 = Ethernet.headerSize
        var etherType = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: Ethernet.etherTypeOffset, as: UInt16.self))
        if etherType == Ethernet.tpidCustomerVLAN {
            guard length >= Ethernet.taggedHeaderSize else { return nil }
            etherType = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: Ethernet.etherTypeOffset &+ Ethernet.tagSize,
                                                         as: UInt16.self))
            l3 = Ethernet.taggedHeaderSize
        }
        let sender: InternetAddress
        let udp: Int
        if etherType == 0x0800 && !local.isIPv6 {
            guard length >= l3 &+ VXLAN.ipv4HeaderSize &+ VXLAN.udpHeaderSize,
                  p.load(fromByteOffset: l3, as: UInt8.self) == 0x45,
                  p.load(fromByteOffset: l3 &+ 9, as: UInt8.self) == 17,
                  UInt64(UInt32(bigEndian: p.loadUnaligned(fromByteOffset: l3 &+ 16, as: UInt32.self))) == local.low
            else { return nil }
            sender = InternetAddress(ipv4NetworkOrder: p.loadUnaligned(fromByteOffset: l3 &+ 12, as: UInt32.self))
            udp = l3 &+ VXLAN.ipv4HeaderSize
        } else if etherType == 0x86DD && local.isIPv6 {
            guard length >= l3 &+ VXLAN.ipv6HeaderSize &+ VXLAN.udpHeaderSize,
                  p.load(fromByteOffset: l3 &+ 6, as: UInt8.self) == 17,
                  UInt64(bigEndian: p.loadUnaligned(fromByteOffset: l3 &+ 24, as: UInt64.self)) == local.high,
                  UInt64(bigEndian: p.loadUnaligned(fromByteOffset: l3 &+ 32, as: UInt64.self)) == local.low
            else { return nil }
            sender = InternetAddress(ipv6High: UInt64(bigEndian: p.loadUnaligned(fromByteOffset: l3 &+ 8, as: UInt64.self)),
                                     low: UInt64(bigEndian: p.loadUnaligned(fromByteOffset: l3 &+ 16, as: UInt64.self)))
            udp = l3 &+ VXLAN.ipv6HeaderSize
        } else {
            return nil
        }
        guard UInt16(bigEndian: p.loadUnaligned(fromByteOffset: udp &+ 2, as: UInt16.self)) == udpPort else { return nil }
        let udpLength = Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: udp &+ 4, as: UInt16.self)))
        let offset = udp &+ VXLAN.udpHeaderSize
        // A UDP length shorter than its header, or longer than what arrived: not a whole datagram.
        if udpLength < VXLAN.udpHeaderSize || udp &+ udpLength > length { return (sender, udp, (offset, -1)) }
        return (sender, udp, (offset, udpLength &- VXLAN.udpHeaderSize))
    }
}
