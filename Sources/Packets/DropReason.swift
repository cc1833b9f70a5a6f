/// Why a frame was dropped. Every drop is counted under one of these, on the
/// port (and queue) where it happened.
public enum DropReason: Int, CaseIterable, Sendable {
    /// The guest had posted no RX buffer for the frame.
    case noRxBuffer
    /// Without mergeable RX buffers, the guest's buffer was smaller than the frame;
    /// or a TAP sent a frame longer than the port's receive buffers.
    case rxBufferTooSmall
    /// The device was marked broken (a hostile or buggy guest); it forwards nothing until reset.
    case deviceBroken
    /// The port's front-end is not connected or its rings are not running yet.
    case notReady
    /// A TX chain had more segments than a batch holds, or a frame more than a TAP write takes,
    /// or a GSO frame's gso_size would cut it into more segments than Ferry makes of one frame (256).
    case tooManySegments
    /// A frame was shorter than an Ethernet header (a guest's TX chain: than the
    /// virtio-net header plus an Ethernet header).
    case runt
    /// The frame's VLAN is not allowed on the port it came in on (a tagged frame on an
    /// access port, an untagged one on a trunk, a tag outside the trunk's list).
    case vlanFiltered
    /// The frame's VLAN has no other port to flood it to.
    case noDestination
    /// The destination was learned behind the port the frame came in on; a bridge never
    /// sends a frame back out of its reception port.
    case hairpin
    /// The source address is a group (multicast or broadcast) address; no station has one.
    case invalidSource
    /// The destination is an IEEE 802.1D link-local group address (01:80:C2:00:00:01 to 0F)
    /// the ingress port does not forward (its `group_fwd_mask`), as a Linux bridge with STP off.
    case linkLocal
    /// The kernel would not take the frame now (a TAP's queue was full: EAGAIN;
    /// a packet port's transmit ring, send buffer or driver queue was full).
    case txFull
    /// The kernel refused the frame with an error other than EAGAIN (logged once per port).
    case ioError
    /// The frame is longer than the port's MTU or transmit slot allows.
    case tooLong
    /// The frame asked for its checksum to be finished (NEEDS_CSUM) at a place
    /// outside the frame: a buggy or hostile guest.
    case badChecksumOffset
    /// A GSO frame (SegmentationError) with gso_size 0.
    case gsoSizeZero
    /// A GSO frame whose hdr_len or own headers reach past its end.
    case gsoHeadersPastFrame
    /// A gso_type Ferry neither negotiates nor segments (UFO, unknown, ECN on UDP).
    case gsoUnsupportedType
    /// A GSO frame that is not TCP or UDP over the IP version its gso_type names.
    case gsoNotTCPOrUDP
    /// A GSO frame with more than 64 KiB of payload after its headers.
    case gsoTooLong
    /// A GSO frame whose IP length fields disagree with its length.
    case gsoIPLengthMismatch
    /// A VXLAN datagram from an address that is not one of the port's remote VTEPs
    /// (`remote=`), or from another address family.
    case vxlanUnknownVTEP
    /// A VXLAN datagram shorter than its header and an inner Ethernet header.
    case vxlanTruncated
    /// A VXLAN datagram with the I flag clear: its VNI field means nothing (RFC 7348 §5).
    case vxlanFlagClear
    /// A VXLAN datagram for a VNI the port does not carry.
    case vxlanUnknownVNI
    /// A frame for a VTEP whose next hop's MAC the kernel's neighbour table does not
    /// hold yet, on a vxlan port sending through an `xdp:` uplink (`via=`); its
    /// resolution is started.
    case vxlanUnresolvedVTEP
    /// A VXLAN datagram taken from an `xdp:` uplink whose outer UDP checksum is
    /// non-zero and wrong (the kernel's socket drops such a datagram itself).
    case vxlanBadChecksum

    /// The name used in stats output and metrics labels.
    public var name: String {
        switch self {
        case .noRxBuffer: "no_rx_buffer"
        case .rxBufferTooSmall: "rx_buffer_too_small"
        case .deviceBroken: "device_broken"
        case .notReady: "not_ready"
        case .tooManySegments: "too_many_segments"
        case .runt: "runt"
        case .vlanFiltered: "vlan_filtered"
        case .noDestination: "no_destination"
        case .hairpin: "hairpin"
        case .invalidSource: "invalid_source"
        case .linkLocal: "link_local"
        case .txFull: "tx_full"
        case .ioError: "io_error"
        case .tooLong: "too_long"
        case .badChecksumOffset: "bad_checksum_offset"
        case .gsoSizeZero: "gso_size_zero"
        case .gsoHeadersPastFrame: "gso_headers_past_frame"
        case .gsoUnsupportedType: "gso_unsupported_type"
        case .gsoNotTCPOrUDP: "gso_not_tcp_udp"
        case .gsoTooLong: "gso_too_long"
        case .gsoIPLengthMismatch: "gso_ip_length_mismatch"
        case .vxlanUnknownVTEP: "vxlan_unknown_vtep"
        case .vxlanTruncated: "vxlan_truncated"
        case .vxlanFlagClear: "vxlan_flag_clear"
        case .vxlanUnknownVNI: "vxlan_unknown_vni"
        case .vxlanUnresolvedVTEP: "vxlan_unresolved_vtep"
        case .vxlanBadChecksum: "vxlan_bad_checksum"
        }
    }
}
