import Glibc

/// The values a port spec may give, checked where the spec is read. Each port kind's own
/// constant (`TapPort.mtus`, `XdpPort.maxQueues`, ...) is the one here, so what the text form
/// and the config file accept is what the port can open.
public enum PortLimits {
    /// IFNAMSIZ counts the terminating NUL, so a name holds at most 15 bytes.
    public static let interfaceNameLength = Int(IFNAMSIZ) - 1
    /// MAX_TAP_QUEUES in drivers/net/tun.c.
    public static let tapQueues = 256
    /// The MTUs a TAP port's receive buffers are sized for.
    public static let tapMTUs = 68...9000
    /// Sockets one packet port may have in its fanout group.
    public static let packetQueues = 64
    /// The queue ids one xdp port may bind (the steering program's socket map size).
    public static let xdpQueues = 64
    /// The frame sizes a generator makes.
    public static let genFrameSizes = 60...9000
    /// VXLAN network identifiers are 24 bits (RFC 7348 §5).
    public static let vxlanVNIs: ClosedRange<UInt32> = 0...0xFF_FFFF
    /// IANA's port for VXLAN (RFC 7348 §5), a vxlan port's default.
    public static let vxlanDefaultUDPPort: UInt16 = 4789
    /// Remote VTEPs one vxlan port's `remote=` may list (its table numbers them in 14 bits, and
    /// keeps room for senders it learns).
    public static let vxlanRemotes = 1023
    /// A virtio-user port's ring sizes (powers of two): its memory is two rings and 2 KiB per entry each way.
    public static let virtioUserQueueSizes = 16...4096
    /// DPDK's virtio-user default.
    public static let virtioUserDefaultQueueSize = 256
}
