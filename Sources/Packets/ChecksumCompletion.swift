/// Finishing a partial checksum in software, for ports whose wire has no
/// checksum offload (AF_XDP, AF_PACKET).
///
/// A guest that negotiated VIRTIO_NET_F_CSUM may send a frame whose
/// transport checksum holds only the pseudo-header sum, with
/// VIRTIO_NET_HDR_F_NEEDS_CSUM set: the sum from `csum_start` to the end of
/// the frame must be folded into the field at `csum_start + csum_offset`
/// (virtio 1.2 §5.1.6.2), as the kernel's skb_checksum_help does.
public enum ChecksumCompletion {
    @usableFromInline static let needsChecksum: UInt8 = 1

    /// Finishes the checksum of the contiguous `frame` if its virtio-net
    /// `header` asks for it. False when the offsets the header names do not lie
    /// inside the frame: a hostile or broken guest's frame, which must not be sent.
    @inlinable
    public static func complete(frame: UnsafeMutableRawPointer, length: Int, header: UnsafeRawPointer) -> Bool {
        if header.load(as: UInt8.self) & needsChecksum == 0 { return true }
        let start = Int(UInt16(littleEndian: header.loadUnaligned(fromByteOffset: 6, as: UInt16.self)))
        let offset = Int(UInt16(littleEndian: header.loadUnaligned(fromByteOffset: 8, as: UInt16.self)))
        let field = start &+ offset
        guard field &+ 2 <= length else { return false }
        let sum = onesComplementSum(frame + start, count: length &- start)
        let folded = ~sum
        (frame + field).storeBytes(of: folded.bigEndian, as: UInt16.self)
        return true
    }

    /// The RFC 1071 sum of `count` bytes, folded to 16 bits (network byte order semantics).
    @inlinable
    static func onesComplementSum(_ bytes: UnsafeRawPointer, count: Int) -> UInt16 {
        var sum: UInt64 = 0
        var i = 0
        // Eight bytes at a time; the carries are folded in at the end.
        while i &+ 8 <= count {
            let word = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            let (s, carry) = sum.addingReportingOverflow(word)
            sum = s &+ (carry ? 1 : 0)
            i &+= 8
        }
        while i &+ 2 <= count {
            let (s, carry) = sum.addingReportingOverflow(UInt64(UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: i, as: UInt16.self))))
            sum = s &+ (carry ? 1 : 0)
            i &+= 2
        }
        if i < count {
            let (s, carry) = sum.addingReportingOverflow(UInt64(bytes.load(fromByteOffset: i, as: UInt8.self)) << 8)
            sum = s &+ (carry ? 1 : 0)
        }
        var folded = (sum & 0xFFFF_FFFF) &+ (sum >> 32)
        folded = (folded & 0xFFFF) &+ (folded >> 16)
        folded = (folded & 0xFFFF) &+ (folded >> 16)
        folded = (folded & 0xFFFF) &+ (folded >> 16)
        return UInt16(truncatingIfNeeded: folded)
    }
}
