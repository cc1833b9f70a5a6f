/// What the control plane tells a ring about itself, the same for both
/// layouts: its size and three areas (SET_VRING_NUM, SET_VRING_ADDR), what the
/// negotiated features make of the virtio-net header and of notifications
/// (SET_FEATURES), and the dirty log while a live migration runs. Each ring
/// owns one; the control thread writes it while the data path is quiesced,
/// and the worker reads its fields in place.
public struct RingConfiguration {
    public var size: UInt16 = 0
    /// SET_VRING_ADDR's three areas. A packed ring reads them as the
    /// descriptor ring, the driver's event suppression structure ("avail")
    /// and the device's ("used").
    public var descAddress = FrontEndAddress(0)
    public var availAddress = FrontEndAddress(0)
    public var usedAddress = FrontEndAddress(0)
    public var eventIndex = false
    /// VIRTIO_F_IN_ORDER: the driver finds used chains by their order, so a
    /// packed TX ring may mark a burst used with one descriptor (`releaseInOrder`).
    public var inOrder = false
    public var headerLength = 12
    public var mergeableBuffers = false
    /// Virtio-net header flags this driver may be given (virtio 1.2 §5.1.6.4.1:
    /// NEEDS_CSUM and DATA_VALID only with GUEST_CSUM); other flags are cleared on push.
    public var acceptedHeaderFlags: UInt8 = 0

    // Live migration, set while the data path is quiesced.
    /// The front-end's dirty log while it asks for logging (VHOST_F_LOG_ALL), else nil.
    @usableFromInline unowned(unsafe) var dirtyLog: DirtyPageLog? = nil
    @usableFromInline var dirtyLogOwner: DirtyPageLog? = nil
    /// Where the used ring's first byte is logged (SET_VRING_ADDR's log_guest_addr),
    /// when the ring's VHOST_VRING_F_LOG asks for used-ring writes to be logged.
    @usableFromInline var usedRingLogAddress: UInt64? = nil

    public init() {}

    /// Takes what `features` (SET_FEATURES) say about the header and notifications.
    public mutating func negotiate(_ features: VirtioNetFeatures) {
        headerLength = features.netHeaderLength
        mergeableBuffers = features.contains(.mergeableRxBuffers)
        // VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID
        acceptedHeaderFlags = features.contains(.guestCsum) ? 0x03 : 0
        eventIndex = features.contains(.eventIndex)
        inOrder = features.contains(.inOrder)
    }

    /// Forgets the size, the areas and the log (a reset device); what the
    /// features said stays until the next SET_FEATURES.
    public mutating func forgetRing() {
        size = 0
        descAddress = FrontEndAddress(0)
        availAddress = FrontEndAddress(0)
        usedAddress = FrontEndAddress(0)
        setDirtyLog(nil, usedRing: nil)
    }

    /// Logs the ring's writes into `log` (nil: logging off); the used ring's
    /// at `usedRing` if the front-end asked for them.
    public mutating func setDirtyLog(_ log: DirtyPageLog?, usedRing: GuestAddress?) {
        dirtyLogOwner = log
        dirtyLog = log
        usedRingLogAddress = log == nil ? nil : usedRing?.rawValue
    }

    /// The dirty log a burst that writes into this ring marks (nil: logging off).
    @inlinable
    public var dirtyPageLog: DirtyPageLog? { dirtyLog }
}
