import CFerry
import Glibc

/// An AF_XDP socket bound to one queue of one interface, with its four rings
/// mapped (kernel Documentation/networking/af_xdp.rst).
///
/// The first socket of a port registers the UMEM (`umem: .register`); the
/// others share it (`.share(first)`, XDP_SHARED_UMEM) and still get fill and
/// completion rings of their own, so each queue fills and reclaims its own
/// frames without a lock. Every socket asks for XDP_USE_NEED_WAKEUP: the
/// kernel then wants a syscall only when a driver actually went idle.
public final class XDPSocket: @unchecked Sendable {
    /// How the kernel moves frames between the NIC and the UMEM.
    public enum CopyMode: String, Sendable {
        /// The driver reads and writes the UMEM itself (XDP_ZEROCOPY).
        case zeroCopy = "zero-copy"
        /// The kernel copies each frame between its own buffers and the UMEM (XDP_COPY).
        case copy
    }

    /// The UMEM this socket uses.
    public enum UMEM {
        /// Register `length` bytes at `area`, cut in `frameSize` chunks.
        case register(area: UnsafeMutableRawPointer, length: Int, frameSize: UInt32)
        /// Use the UMEM another socket registered.
        case share(XDPSocket)
    }

    public let descriptor: FileDescriptor
    public let interfaceIndex: UInt32
    public let queue: UInt32
    public let copyMode: CopyMode
    public let rx: XDPRing
    public let tx: XDPRing
    public let fill: XDPRing
    public let completion: XDPRing
    private let mappings: [MemoryMapping]

    /// Creates the socket, sizes and maps its rings, and binds it to
    /// `queue` of `interfaceIndex` in `copyMode`. Ring sizes must be powers of two.
    public init(interfaceIndex: UInt32, queue: UInt32, umem: UMEM, copyMode: CopyMode,
                ringSize: UInt32, fillRingSize: UInt32) throws(SystemError) {
        precondition(ringSize.nonzeroBitCount == 1 && fillRingSize.nonzeroBitCount == 1, "ring sizes are powers of two")
        let socketFD: Int32
        do throws(SystemError) {
            socketFD = try syscall("socket(AF_XDP)") { socket(AF_XDP, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        } catch where error.errno == EPERM {
            throw SystemError("socket(AF_XDP): an AF_XDP socket needs CAP_NET_RAW", errno: EPERM)
        }
        let fd = FileDescriptor(owning: socketFD)
        var shared: XDPSocket?
        switch umem {
        case .register(let area, let length, let frameSize):
            var registration = xdp_umem_reg(addr: UInt64(UInt(bitPattern: area)), len: UInt64(length),
                                            chunk_size: frameSize, headroom: 0, flags: 0)
            try Self.setOption(fd, XDP_UMEM_REG, &registration, "XDP_UMEM_REG")
        case .share(let owner):
            shared = owner
        }
        var fillSize = fillRingSize
        var ring = ringSize
        try Self.setOption(fd, XDP_UMEM_FILL_RING, &fillSize, "XDP_UMEM_FILL_RING")
        try Self.setOption(fd, XDP_UMEM_COMPLETION_RING, &ring, "XDP_UMEM_COMPLETION_RING")
        try Self.setOption(fd, XDP_RX_RING, &ring, "XDP_RX_RING")
        try Self.setOption(fd, XDP_TX_RING, &ring, "XDP_TX_RING")

        var offsets = xdp_mmap_offsets()
        var length = socklen_t(MemoryLayout<xdp_mmap_offsets>.size)
        _ = try syscall("getsockopt(XDP_MMAP_OFFSETS)") { getsockopt(fd.rawValue, SOL_XDP, XDP_MMAP_OFFSETS, &offsets, &length) }
        guard length == socklen_t(MemoryLayout<xdp_mmap_offsets>.size) else {
            // Kernels before 5.4 answer without the flags fields; need_wakeup needs them.
            throw SystemError("getsockopt(XDP_MMAP_OFFSETS): a kernel older than 5.4 (no need_wakeup)", errno: EOPNOTSUPP)
        }
        let raw = fd.rawValue
        func map(_ o: xdp_ring_offset, entry: Int, count: UInt32, at pageOffset: UInt64, _ name: String) throws(SystemError) -> (XDPRing, MemoryMapping) {
            let mapping: MemoryMapping
            do {
                mapping = try MemoryMapping(fd: raw, length: Int(o.desc) + Int(count) * entry, offset: Int(pageOffset))
            } catch {
                throw SystemError("mmap(\(name) ring)", errno: error.errno)
            }
            return (XDPRing(base: mapping.base, offsets: o, size: count), mapping)
        }
        let (rx, rxMap) = try map(offsets.rx, entry: 16, count: ringSize, at: FERRY_XDP_PGOFF_RX_RING, "RX")
        let (tx, txMap) = try map(offsets.tx, entry: 16, count: ringSize, at: FERRY_XDP_PGOFF_TX_RING, "TX")
        let (fill, fillMap) = try map(offsets.fr, entry: 8, count: fillRingSize, at: FERRY_XDP_UMEM_PGOFF_FILL_RING, "fill")
        let (completion, completionMap) = try map(offsets.cr, entry: 8, count: ringSize,
                                                  at: FERRY_XDP_UMEM_PGOFF_COMPLETION_RING, "completion")

        var flags = UInt16(XDP_USE_NEED_WAKEUP) | UInt16(copyMode == .zeroCopy ? XDP_ZEROCOPY : XDP_COPY)
        if shared != nil { flags |= UInt16(XDP_SHARED_UMEM) }
        var address = sockaddr_xdp(sxdp_family: UInt16(AF_XDP), sxdp_flags: flags, sxdp_ifindex: interfaceIndex,
                                   sxdp_queue_id: queue, sxdp_shared_umem_fd: UInt32(bitPattern: shared?.descriptor.rawValue ?? 0))
        _ = try syscall("bind(AF_XDP, ifindex \(interfaceIndex), queue \(queue), \(copyMode.rawValue))") {
            withUnsafePointer(to: &address) {
                // SAFETY: sockaddr_xdp starts with its family like every sockaddr; the kernel reads the
                // sizeof(sockaddr_xdp) bytes of `address` given as the length.
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(raw, $0, socklen_t(MemoryLayout<sockaddr_xdp>.size))
                }
            }
        }
        descriptor = fd
        self.interfaceIndex = interfaceIndex
        self.queue = queue
        self.copyMode = copyMode
        self.rx = rx
        self.tx = tx
        self.fill = fill
        self.completion = completion
        mappings = [rxMap, txMap, fillMap, completionMap]
    }

    private static func setOption<T: BitwiseCopyable>(_ fd: borrowing FileDescriptor, _ option: Int32, _ value: inout T, _ name: String) throws(SystemError) {
        let raw = fd.rawValue
        _ = try syscall("setsockopt(\(name))") { setsockopt(raw, SOL_XDP, option, &value, socklen_t(MemoryLayout<T>.size)) }
    }

    /// Asks the kernel to transmit what the TX ring holds. Copy mode sends at
    /// most a small batch per call (32 frames on current kernels), so callers
    /// repeat while the ring drains. EAGAIN and EBUSY mean "try again later",
    /// ENOBUFS that the driver's queue is full: all three are reported as
    /// `.wouldBlock`; anything else (ENETDOWN, ENXIO: the interface went away) throws.
    @inlinable
    public func kickTransmit() throws(SystemError) -> IOResult<Int> {
        let fd = descriptor.rawValue
        let r = sendto(fd, nil, 0, Int32(MSG_DONTWAIT), nil, 0)
        if r >= 0 { return .done(r) }
        switch errno {
        case EAGAIN, EBUSY, ENOBUFS, EINTR: return .wouldBlock
        case let e: throw SystemError("sendto(AF_XDP)", errno: e)
        }
    }

    /// Wakes a driver that stopped taking buffers from the fill ring.
    @inlinable
    public func kickReceive() throws(SystemError) {
        let fd = descriptor.rawValue
        if recvfrom(fd, nil, 0, Int32(MSG_DONTWAIT), nil, nil) < 0 {
            switch errno {
            case EAGAIN, EBUSY, ENOBUFS, EINTR: return
            case let e: throw SystemError("recvfrom(AF_XDP)", errno: e)
            }
        }
    }

    /// The kernel's drop counters for this socket (XDP_STATISTICS).
    public func statistics() throws(SystemError) -> xdp_statistics {
        var stats = xdp_statistics()
        var length = socklen_t(MemoryLayout<xdp_statistics>.size)
        let raw = descriptor.rawValue
        _ = try syscall("getsockopt(XDP_STATISTICS)") { getsockopt(raw, SOL_XDP, XDP_STATISTICS, &stats, &length) }
        return stats
    }
}
