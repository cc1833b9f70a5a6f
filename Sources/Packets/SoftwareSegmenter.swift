/// Cuts a GSO super-frame (TCP over IPv4/IPv6, UDP for USO) into the frames a
/// destination without segmentation offload takes, as the kernel's
/// tcp_gso_segment and __udp_gso_segment would: every segment repeats the
/// headers, with
///   - IPv4: total length, identification (+1 per segment), header checksum;
///     IPv6: payload length;
///   - TCP: sequence number advanced by the payload before it; FIN and PSH only
///     on the last segment, CWR only on the first;
///   - UDP: length;
///   - the L4 checksum either computed (`.complete`) or left to the destination
///     (`.partial`: the pseudo-header sum in the field and NEEDS_CSUM in the
///     segment's virtio-net header, for a guest with GUEST_CSUM or a TAP with
///     TUN_F_CSUM).
/// Any 802.1Q tags before the IP header are repeated as they are: a tag pushed
/// or popped for the destination was already edited into the frame's segments.
///
/// The headers are parsed from a private copy (a guest may rewrite its buffers
/// while Ferry reads them; only payload bytes are read from the frame itself),
/// and segments go straight into the sink. Nothing is allocated per frame.
public final class SoftwareSegmenter {
    public enum Checksum: Sendable {
        /// Every checksum computed: the destination has no checksum offload.
        case complete
        /// L4 checksums left to the destination (NEEDS_CSUM).
        case partial
    }

    /// How far a call got: segments written and the segments the frame makes.
    public struct Outcome: Equatable, Sendable {
        public var written: Int
        public var segmentCount: Int
        @inlinable public init(written: Int, segmentCount: Int) {
            self.written = written
            self.segmentCount = segmentCount
        }
        @inlinable public var isComplete: Bool { written == segmentCount }
    }

    /// The frame's headers, copied once.
    @usableFromInline let frameHeaders: UnsafeMutableRawPointer
    /// One segment's headers, built from `frameHeaders`.
    @usableFromInline let segmentHeaders: UnsafeMutableRawPointer

    public init() {
        frameHeaders = .allocate(byteCount: GSOFrameLayout.maxHeaderLength, alignment: 8)
        segmentHeaders = .allocate(byteCount: GSOFrameLayout.maxHeaderLength, alignment: 8)
    }

    deinit {
        frameHeaders.deallocate()
        segmentHeaders.deallocate()
    }

    // Offsets in the IPv4 (RFC 791), IPv6 (RFC 8200), TCP (RFC 9293) and UDP (RFC 768) headers.
    @usableFromInline static let ipv4TotalLength = 2
    @usableFromInline static let ipv4Identification = 4
    @usableFromInline static let ipv4Checksum = 10
    @usableFromInline static let ipv4Addresses = 12
    @usableFromInline static let ipv6PayloadLength = 4
    @usableFromInline static let ipv6Addresses = 8
    @usableFromInline static let tcpSequence = 4
    @usableFromInline static let tcpFlags = 13
    @usableFromInline static let tcpChecksum = 16
    @usableFromInline static let udpLength = 4
    @usableFromInline static let udpChecksum = 6
    @usableFromInline static let tcpFIN: UInt8 = 0x01
    @usableFromInline static let tcpPSH: UInt8 = 0x08
    @usableFromInline static let tcpCWR: UInt8 = 0x80

    /// Parses and checks the headers of `frame` against its virtio-net `header`
    /// (10 or 12 bytes) without writing anything.
    @inlinable
    public func layout(of frame: FrameSegments, header: VirtioNetHeader) throws(SegmentationError) -> GSOFrameLayout {
        let available = frame.copy(from: 0, count: GSOFrameLayout.maxHeaderLength, to: frameHeaders)
        return try GSOFrameLayout(header: header, prefix: frameHeaders, available: available,
                                  frameLength: frame.length)
    }

    /// Segments `frame` into `sink`. Throws (writing nothing) when the header
    /// does not describe a frame that can be segmented; stops early, saying so
    /// in the outcome, when the sink has no room for the next segment.
    @inlinable
    public func segment<Sink: SegmentSink>(_ frame: FrameSegments, header: VirtioNetHeader, checksum: Checksum,
                                           into sink: inout Sink) throws(SegmentationError) -> Outcome {
        segment(frame, layout: try layout(of: frame, header: header), checksum: checksum, into: &sink)
    }

    /// Segments `frame` as `layout` says, which must be what the last
    /// `layout(of:header:)` call returned for this frame: its headers are the
    /// ones that call copied. For a caller that looks at the layout first.
    @inlinable
    public func segment<Sink: SegmentSink>(_ frame: FrameSegments, layout: GSOFrameLayout, checksum: Checksum,
                                           into sink: inout Sink) -> Outcome {
        let segments = layout.segmentCount
        let headerLength = layout.headerLength
        let network = layout.networkOffset
        let transport = layout.transportOffset
        let isTCP = layout.transport == .tcp
        let checksumField = transport &+ (isTCP ? Self.tcpChecksum : Self.udpChecksum)

        // The pseudo header's addresses and protocol (RFC 9293 §3.1, RFC 8200 §8.1): the same for every segment.
        // SAFETY: GSOFrameLayout checked that the IP header (20/40 bytes from `network`) and, for TCP,
        // the 20-byte TCP header lie inside the headers copied into frameHeaders (maxHeaderLength
        // bytes): the addresses, the identification, the sequence number and the flags read here are
        // inside them.
        var addressSum = layout.isIPv6
            ? UInt64(ChecksumCompletion.onesComplementSum(frameHeaders + (network &+ Self.ipv6Addresses), count: 32))
            : UInt64(ChecksumCompletion.onesComplementSum(frameHeaders + (network &+ Self.ipv4Addresses), count: 8))
        addressSum &+= UInt64(isTCP ? GSOFrameLayout.protocolTCP : GSOFrameLayout.protocolUDP)
        let firstID = UInt16(bigEndian: frameHeaders.loadUnaligned(fromByteOffset: network &+ Self.ipv4Identification,
                                                                   as: UInt16.self))
        // A UDP header is 8 bytes: its frame's copied headers may end before a TCP field's place.
        let firstSequence = isTCP
            ? UInt32(bigEndian: frameHeaders.loadUnaligned(fromByteOffset: transport &+ Self.tcpSequence, as: UInt32.self))
            : 0
        let flags = isTCP ? frameHeaders.load(fromByteOffset: transport &+ Self.tcpFlags, as: UInt8.self) : 0

        var cursor = PayloadCursor(frame, at: headerLength)
        var remaining = layout.payloadLength
        var i = 0
        while i < segments {
            let payload = min(layout.segmentSize, remaining)
            let length = headerLength &+ payload
            if !sink.beginSegment(length: length) { return Outcome(written: i, segmentCount: segments) }
            let h = segmentHeaders
            // SAFETY: headerLength ≤ maxHeaderLength (GSOFrameLayout checked it lies in the copied prefix).
            h.copyMemory(from: frameHeaders, byteCount: headerLength)
            if layout.isIPv6 {
                storeBigEndian(UInt16(truncatingIfNeeded: length &- network &- 40), h, network &+ Self.ipv6PayloadLength)
            } else {
                storeBigEndian(UInt16(truncatingIfNeeded: length &- network), h, network &+ Self.ipv4TotalLength)
                storeBigEndian(firstID &+ UInt16(truncatingIfNeeded: i), h, network &+ Self.ipv4Identification)
                storeBigEndian(UInt16(0), h, network &+ Self.ipv4Checksum)
                let ipHeaderSum = ChecksumCompletion.onesComplementSum(h + network, count: transport &- network)
                storeBigEndian(~ipHeaderSum, h, network &+ Self.ipv4Checksum)
            }
            let l4Length = length &- transport
            if isTCP {
                storeBigEndian(firstSequence &+ UInt32(truncatingIfNeeded: i &* layout.segmentSize), h,
                               transport &+ Self.tcpSequence)
                var segmentFlags = flags
                if i &+ 1 < segments { segmentFlags &= ~(Self.tcpFIN | Self.tcpPSH) }
                if i > 0 { segmentFlags &= ~Self.tcpCWR }
                h.storeBytes(of: segmentFlags, toByteOffset: transport &+ Self.tcpFlags, as: UInt8.self)
            } else {
                storeBigEndian(UInt16(truncatingIfNeeded: l4Length), h, transport &+ Self.udpLength)
            }
            let pseudoSum = addressSum &+ UInt64(l4Length)
            var out = VirtioNetHeader()
            switch checksum {
            case .partial:
                storeBigEndian(Self.fold(pseudoSum), h, checksumField)
                cursor.copy(payload, to: &sink, at: headerLength, summing: nil)
                out.flags = VirtioNetHeader.needsChecksum
                out.checksumStart = UInt16(truncatingIfNeeded: transport)
                out.checksumOffset = UInt16(truncatingIfNeeded: checksumField &- transport)
            case .complete:
                storeBigEndian(UInt16(0), h, checksumField)
                var sum = OnesComplementAccumulator()
                sum.add(h + transport, count: headerLength &- transport)
                cursor.copy(payload, to: &sink, at: headerLength, summing: &sum)
                var value = ~Self.fold(sum.total &+ pseudoSum)
                // RFC 768: a computed 0 goes out as 0xFFFF (0 means "no checksum").
                if !isTCP && value == 0 { value = 0xFFFF }
                storeBigEndian(value, h, checksumField)
            }
            sink.write(h, count: headerLength, at: 0)
            sink.endSegment(header: out)
            remaining &-= payload
            i &+= 1
        }
        return Outcome(written: segments, segmentCount: segments)
    }

    @inlinable
    static func fold(_ sum: UInt64) -> UInt16 {
        var s = sum
        while s >> 16 != 0 { s = (s & 0xFFFF) &+ (s >> 16) }
        return UInt16(truncatingIfNeeded: s)
    }
}

@inlinable
func storeBigEndian<T: FixedWidthInteger>(_ value: T, _ base: UnsafeMutableRawPointer, _ offset: Int) {
    // SAFETY: every caller writes a field of a segment's headers in segmentHeaders (maxHeaderLength
    // bytes), at an offset GSOFrameLayout placed inside the frame's header length.
    base.storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self)
}

/// A ones'-complement sum (RFC 1071) over pieces of any length: a piece that
/// starts at an odd offset of the summed run contributes its sum byte-swapped
/// (RFC 1071 §2(B)).
@usableFromInline
struct OnesComplementAccumulator {
    @usableFromInline var total: UInt64 = 0
    @usableFromInline var odd = false

    @inlinable init() {}

    @inlinable
    mutating func add(_ bytes: UnsafeRawPointer, count: Int) {
        let sum = ChecksumCompletion.onesComplementSum(bytes, count: count)
        total &+= UInt64(odd ? sum.byteSwapped : sum)
        if count & 1 == 1 { odd.toggle() }
    }
}

/// Where the next payload byte of a frame is: its range and the offset in it.
@usableFromInline
struct PayloadCursor {
    @usableFromInline let frame: FrameSegments
    @usableFromInline var range = 0
    @usableFromInline var offset = 0

    @inlinable
    init(_ frame: FrameSegments, at start: Int) {
        self.frame = frame
        var skip = start
        while range < frame.count && skip >= Int(frame.lengths[range]) {
            skip &-= Int(frame.lengths[range])
            range &+= 1
        }
        offset = skip
    }

    /// Copies the next `count` payload bytes into the sink's segment from
    /// `position` on, adding them to `sum` when given.
    @inlinable
    mutating func copy<Sink: SegmentSink>(_ count: Int, to sink: inout Sink, at position: Int,
                                          summing sum: UnsafeMutablePointer<OnesComplementAccumulator>?) {
        var left = count
        var at = position
        while left > 0 && range < frame.count {
            let available = Int(frame.lengths[range]) &- offset
            let piece = min(available, left)
            let source = UnsafeRawPointer(frame.bases[range]) + offset
            sink.write(source, count: piece, at: at)
            sum?.pointee.add(source, count: piece)
            left &-= piece
            at &+= piece
            offset &+= piece
            if offset == Int(frame.lengths[range]) {
                range &+= 1
                offset = 0
            }
        }
    }
}
