/// Finishing a partial checksum in software, for ports whose far side has no
/// checksum offload (a NIC reached through a packet socket or AF_XDP).
///
/// A guest that negotiated VIRTIO_NET_F_CSUM may send a frame with
/// VIRTIO_NET_HDR_F_NEEDS_CSUM (virtio 1.2 §5.1.6.2): its L4 checksum field
/// holds only the pseudo-header sum, and the device is to sum the frame from
/// `csum_start` to its end and store the result at `csum_start + csum_offset`.
/// This does what the kernel's skb_checksum_help does for such a frame when
/// the device cannot: fold the sum, complement it, and store 0xFFFF instead of
/// 0 (CSUM_MANGLED_0: for UDP, 0 would mean "no checksum"; for TCP both are
/// the same value in ones' complement).
///
/// Work on a private copy of the frame only: a guest may rewrite its own
/// buffers while we read them, and the sum must cover the bytes that are sent.
public enum ChecksumCompletion {
    /// VIRTIO_NET_HDR_F_NEEDS_CSUM, bit 0 of the header's flags byte.
    public static let needsChecksum: UInt8 = VirtioNetHeader.needsChecksum
    /// Byte offsets in the virtio-net header (struct virtio_net_hdr; little-endian, §5.1.6).
    @usableFromInline static let checksumStartOffset = 6
    @usableFromInline static let checksumFieldOffset = 8

    /// Completes the checksum of the `length`-byte frame at `frame` if its
    /// virtio-net `header` asks for it; true when done or not asked, false when
    /// the header names a place outside the frame (nothing was written then).
    @inlinable
    public static func complete(frame: UnsafeMutableRawPointer, length: Int, header: UnsafeRawPointer) -> Bool {
        // SAFETY: the header is a batch's or slot's (PacketBatch.headerSize bytes: offsets 0, 6 and 8 +
        // 2 lie inside it); the frame is the caller's private copy of `length` bytes, and the guard
        // below keeps the sum ([start, length)) and the 2-byte field inside it.
        if header.load(as: UInt8.self) & needsChecksum == 0 { return true }
        let start = Int(UInt16(littleEndian: header.loadUnaligned(fromByteOffset: checksumStartOffset, as: UInt16.self)))
        let field = start &+ Int(UInt16(littleEndian: header.loadUnaligned(fromByteOffset: checksumFieldOffset,
                                                                           as: UInt16.self)))
        // Both are 16-bit, so the sums cannot overflow; the field's two bytes lie in the frame.
        guard start < length, field &+ 2 <= length else { return false }
        let sum = onesComplementSum(frame + start, count: length &- start)
        let checksum = ~sum
        frame.storeBytes(of: (checksum == 0 ? 0xFFFF : checksum).bigEndian, toByteOffset: field, as: UInt16.self)
        return true
    }

    /// The ones'-complement sum of `count` bytes as big-endian 16-bit words
    /// (RFC 1071), an odd last byte padded with zero; folded, not complemented.
    ///
    /// Ones'-complement addition does not care about byte order (RFC 1071
    /// §2(B)), so the words are summed as the CPU loads them, four bytes at a
    /// time into a 64-bit accumulator, and the folded result is byte-swapped
    /// once on a little-endian machine.
    @inlinable
    public static func onesComplementSum(_ bytes: UnsafeRawPointer, count: Int) -> UInt16 {
        // SAFETY: every load is tested first against `count`, the readable bytes the caller gave at
        // `bytes` (i + 4, i + 2, i < count).
        var accumulator: UInt64 = 0
        var i = 0
        // 2^32 additions of 32-bit values fit in 64 bits: no carry is lost.
        while i &+ 4 <= count {
            accumulator &+= UInt64(bytes.loadUnaligned(fromByteOffset: i, as: UInt32.self))
            i &+= 4
        }
        if i &+ 2 <= count {
            accumulator &+= UInt64(bytes.loadUnaligned(fromByteOffset: i, as: UInt16.self))
            i &+= 2
        }
        if i < count {
            // The bytes [last, 0] as the CPU would load them: the high byte of a big-endian word.
            accumulator &+= UInt64(UInt16(bigEndian: UInt16(bytes.load(fromByteOffset: i, as: UInt8.self)) << 8))
        }
        while accumulator >> 16 != 0 { accumulator = (accumulator & 0xFFFF) &+ (accumulator >> 16) }
        return UInt16(truncatingIfNeeded: accumulator).bigEndian
    }
}
