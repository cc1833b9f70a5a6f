/// Why a frame's virtio-net header asks for segmentation (GSO) that cannot be
/// done: a buggy or hostile sender. Each is counted as a drop of its own.
public enum SegmentationError: Error, Equatable, Sendable {
    /// gso_size is 0: no segment length to cut at.
    case segmentSizeZero
    /// hdr_len, or the headers the frame itself carries, reach past its end.
    case headersPastFrame
    /// A gso_type Ferry does not segment (UFO, unknown values, ECN on UDP).
    case unsupportedType(UInt8)
    /// The headers are not TCP or UDP over the IP version the gso_type names.
    case notTCPOrUDP
    /// NEEDS_CSUM names a checksum start or field outside the frame.
    case checksumOffsetPastFrame
    /// More than 64 KiB of payload after the headers.
    case tooLong
    /// The IPv4 total length or IPv6 payload length disagrees with the frame's length,
    /// or an IPv4/TCP header length field is below its minimum.
    case inconsistentIPLength

    /// The drop counter the frame goes to.
    public var dropReason: DropReason {
        switch self {
        case .segmentSizeZero: .gsoSizeZero
        case .headersPastFrame: .gsoHeadersPastFrame
        case .unsupportedType: .gsoUnsupportedType
        case .notTCPOrUDP: .gsoNotTCPOrUDP
        case .checksumOffsetPastFrame: .badChecksumOffset
        case .tooLong: .gsoTooLong
        case .inconsistentIPLength: .gsoIPLengthMismatch
        }
    }
}
