/// Device feature bits a virtio-net back-end negotiates (virtio 1.2 §5.1.3, §6).
public struct VirtioNetFeatures: OptionSet, Sendable, Hashable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let csum = Self(rawValue: 1 << 0)             // VIRTIO_NET_F_CSUM
    public static let guestCsum = Self(rawValue: 1 << 1)        // VIRTIO_NET_F_GUEST_CSUM
    public static let mtu = Self(rawValue: 1 << 3)              // VIRTIO_NET_F_MTU
    public static let mac = Self(rawValue: 1 << 5)              // VIRTIO_NET_F_MAC
    public static let guestTSO4 = Self(rawValue: 1 << 7)        // VIRTIO_NET_F_GUEST_TSO4
    public static let guestTSO6 = Self(rawValue: 1 << 8)        // VIRTIO_NET_F_GUEST_TSO6
    public static let guestECN = Self(rawValue: 1 << 9)         // VIRTIO_NET_F_GUEST_ECN
    public static let hostTSO4 = Self(rawValue: 1 << 11)        // VIRTIO_NET_F_HOST_TSO4
    public static let hostTSO6 = Self(rawValue: 1 << 12)        // VIRTIO_NET_F_HOST_TSO6
    public static let hostECN = Self(rawValue: 1 << 13)         // VIRTIO_NET_F_HOST_ECN
    public static let mergeableRxBuffers = Self(rawValue: 1 << 15) // VIRTIO_NET_F_MRG_RXBUF
    public static let status = Self(rawValue: 1 << 16)          // VIRTIO_NET_F_STATUS
    public static let guestAnnounce = Self(rawValue: 1 << 21)   // VIRTIO_NET_F_GUEST_ANNOUNCE
    public static let multiqueue = Self(rawValue: 1 << 22)      // VIRTIO_NET_F_MQ
    public static let logAll = Self(rawValue: 1 << 26)          // VHOST_F_LOG_ALL (vhost-user.rst)
    public static let indirectDescriptors = Self(rawValue: 1 << 28) // VIRTIO_F_RING_INDIRECT_DESC (§6)
    public static let eventIndex = Self(rawValue: 1 << 29)      // VIRTIO_F_RING_EVENT_IDX (§6)
    public static let protocolFeatures = Self(rawValue: 1 << 30) // VHOST_USER_F_PROTOCOL_FEATURES
    public static let version1 = Self(rawValue: 1 << 32)        // VIRTIO_F_VERSION_1 (§6)
    public static let ringPacked = Self(rawValue: 1 << 34)      // VIRTIO_F_RING_PACKED (§6)
    public static let inOrder = Self(rawValue: 1 << 35)         // VIRTIO_F_IN_ORDER (§6)
    public static let guestUSO4 = Self(rawValue: 1 << 54)       // VIRTIO_NET_F_GUEST_USO4
    public static let guestUSO6 = Self(rawValue: 1 << 55)       // VIRTIO_NET_F_GUEST_USO6
    public static let hostUSO = Self(rawValue: 1 << 56)         // VIRTIO_NET_F_HOST_USO

    /// Segmentation offloads in both directions (§5.1.3.1: HOST_* need CSUM,
    /// GUEST_* need GUEST_CSUM, which are offered with them). The guest may send
    /// GSO frames (HOST_*): Ferry passes them on or cuts them for a destination
    /// that cannot take them. The guest may receive them (GUEST_*): Ferry cuts
    /// them for a guest that did not take the feature.
    public static let segmentationOffloads: Self = [
        .hostTSO4, .hostTSO6, .hostECN, .hostUSO, .guestTSO4, .guestTSO6, .guestECN, .guestUSO4, .guestUSO6,
    ]

    /// Checksum offload in both directions.
    public static let checksumOffloads: Self = [.csum, .guestCsum]

    /// What Ferry offers: split or packed rings (the driver picks) with indirect
    /// tables and event index, mergeable RX buffers for jumbo frames, checksum
    /// and segmentation offloads passed through (the header travels unchanged
    /// where the destination takes it; otherwise Ferry finishes the checksum or
    /// segments in software).
    ///
    /// IN_ORDER promises only what both ring layouts already do: every queue
    /// takes chains in the order they were made available and writes their used
    /// entries in that order (a chain left for later stays first in line, none
    /// is skipped). A driver that takes it runs its cheaper in-order paths (DPDK's
    /// virtio PMD: no free list, a burst's descriptors reclaimed as one run), and
    /// a busy front-end is what limits guest-to-guest rates (docs/PERFORMANCE.md).
    public static let offered = Self([
        .csum, .guestCsum, .mtu, .mergeableRxBuffers, .multiqueue,
        .indirectDescriptors, .eventIndex, .protocolFeatures, .version1, .ringPacked, .inOrder,
    ]).union(segmentationOffloads)

    /// The virtio-net header length these features imply (§5.1.6): 12 bytes with
    /// VERSION_1 or MRG_RXBUF (num_buffers present), 10 for legacy drivers without either.
    @inlinable
    public var netHeaderLength: Int {
        contains(.version1) || contains(.mergeableRxBuffers) ? 12 : 10
    }
}

/// Device status bits (virtio 1.2 §2.1), reported through GET_STATUS.
public enum VirtioDeviceStatus {
    public static let acknowledge: UInt8 = 1
    public static let driver: UInt8 = 2
    public static let driverOK: UInt8 = 4
    public static let featuresOK: UInt8 = 8
    public static let needsReset: UInt8 = 64
    public static let failed: UInt8 = 128
}
