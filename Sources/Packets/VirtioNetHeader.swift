/// The fields of a virtio-net header (struct virtio_net_hdr, virtio 1.2 §5.1.6),
/// read once into a value so that a guest rewriting its buffer cannot change
/// them between a check and their use. Little-endian on the wire; `num_buffers`
/// (bytes 10–11) belongs to whoever delivers the frame and is not part of it.
public struct VirtioNetHeader: Equatable, Sendable {
    /// VIRTIO_NET_HDR_F_NEEDS_CSUM: the L4 checksum is left to the device (§5.1.6.2).
    public static let needsChecksum: UInt8 = 1
    /// VIRTIO_NET_HDR_F_DATA_VALID: the device checked the checksum (§5.1.6.3).
    public static let dataValid: UInt8 = 2

    /// gso_type values (§5.1.6; UDP_L4 from virtio 1.2's USO, linux/virtio_net.h since 5.18).
    public static let gsoNone: UInt8 = 0
    public static let gsoTCPv4: UInt8 = 1
    /// UFO: IP fragmentation of a UDP datagram. Never offered; refused when seen.
    public static let gsoUDP: UInt8 = 3
    public static let gsoTCPv6: UInt8 = 4
    public static let gsoUDPL4: UInt8 = 5
    /// VIRTIO_NET_HDR_GSO_ECN: the TCP frame carries CWR (set on the first segment only).
    public static let gsoECN: UInt8 = 0x80

    public var flags: UInt8
    public var gsoType: UInt8
    /// hdr_len: a hint at the length of the headers (Linux writes its linear part there).
    public var headerLength: UInt16
    /// gso_size: payload bytes per segment.
    public var segmentSize: UInt16
    public var checksumStart: UInt16
    public var checksumOffset: UInt16

    public init(flags: UInt8 = 0, gsoType: UInt8 = 0, headerLength: UInt16 = 0, segmentSize: UInt16 = 0,
                checksumStart: UInt16 = 0, checksumOffset: UInt16 = 0) {
        self.flags = flags
        self.gsoType = gsoType
        self.headerLength = headerLength
        self.segmentSize = segmentSize
        self.checksumStart = checksumStart
        self.checksumOffset = checksumOffset
    }

    @inlinable
    public init(loading header: UnsafeRawPointer) {
        // SAFETY: `header` is a batch's header slot or a private copy of one, at least 10 bytes
        // (PacketBatch.headerSize is 12): offsets 0 through 9 lie inside it.
        flags = header.load(as: UInt8.self)
        gsoType = header.load(fromByteOffset: 1, as: UInt8.self)
        headerLength = UInt16(littleEndian: header.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        segmentSize = UInt16(littleEndian: header.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        checksumStart = UInt16(littleEndian: header.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
        checksumOffset = UInt16(littleEndian: header.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
    }

    /// The gso_type byte alone, for the per-frame "is it a super-frame" test.
    @inlinable
    public static func gsoType(at header: UnsafeRawPointer) -> UInt8 {
        // SAFETY: `header` is a batch's or a slot's header, `PacketBatch.headerSize` bytes;
        // byte 1 is inside it.
        header.load(fromByteOffset: 1, as: UInt8.self)
    }

    /// Writes a header that asks nothing (no checksum, no GSO) over the ten bytes before `num_buffers`.
    @inlinable
    public static func storeNone(to header: UnsafeMutableRawPointer) {
        // SAFETY: the caller's buffer has room for ten bytes: its callers (PacketPort and its
        // segment sink) write the front of a transmit slot, sized at open for the virtio-net header
        // plus an MTU frame (TransmitRing).
        header.storeBytes(of: 0, as: UInt64.self)
        header.storeBytes(of: 0, toByteOffset: 8, as: UInt16.self)
    }

    /// Writes the ten bytes before `num_buffers`.
    @inlinable
    public func store(to header: UnsafeMutableRawPointer) {
        // SAFETY: every caller's header room holds at least 10 bytes: a slot sink's header (0 or
        // >= 10 by its init's precondition, stored only when not 0), SegmentBuffers' 12-byte copy,
        // or the front of an AF_PACKET transmit slot (sized at open for the header and an MTU frame;
        // `gatherWithVirtioNetHeader` also checks its limit).
        header.storeBytes(of: flags, as: UInt8.self)
        header.storeBytes(of: gsoType, toByteOffset: 1, as: UInt8.self)
        header.storeBytes(of: headerLength.littleEndian, toByteOffset: 2, as: UInt16.self)
        header.storeBytes(of: segmentSize.littleEndian, toByteOffset: 4, as: UInt16.self)
        header.storeBytes(of: checksumStart.littleEndian, toByteOffset: 6, as: UInt16.self)
        header.storeBytes(of: checksumOffset.littleEndian, toByteOffset: 8, as: UInt16.self)
    }

    /// Whether the frame is a GSO super-frame (any gso_type but NONE, ECN bit aside).
    @inlinable
    public var isSegmentationOffload: Bool { gsoType & ~Self.gsoECN != Self.gsoNone }
}
