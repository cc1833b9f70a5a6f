import CFerry
import Glibc
import Model

/// Offloads a TAP accepts from its reader (TUNSETOFFLOAD): with one set, frames
/// Ferry writes may carry partial checksums or be GSO super-frames described by
/// their virtio-net header. Values from <linux/if_tun.h>.
public struct TapOffloads: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// TUN_F_CSUM: frames may leave the L4 checksum to the kernel (NEEDS_CSUM).
    public static let checksum = TapOffloads(rawValue: UInt32(TUN_F_CSUM))
    /// TUN_F_TSO4: TCP over IPv4 segmentation; the kernel requires `checksum` with it.
    public static let tso4 = TapOffloads(rawValue: UInt32(TUN_F_TSO4))
    /// TUN_F_TSO6: TCP over IPv6 segmentation; requires `checksum`.
    public static let tso6 = TapOffloads(rawValue: UInt32(TUN_F_TSO6))
    /// TUN_F_TSO_ECN: TSO frames may carry ECN (CWR) bits.
    public static let tsoECN = TapOffloads(rawValue: UInt32(TUN_F_TSO_ECN))
    /// TUN_F_UFO: UDP fragmentation offload (refused by kernels since 4.14 unless for compatibility).
    public static let ufo = TapOffloads(rawValue: UInt32(TUN_F_UFO))
    /// TUN_F_USO4: UDP segmentation (GSO_UDP_L4) over IPv4; linux/if_tun.h since 6.2
    /// (the build host's headers may be older, so the value is spelled here).
    public static let uso4 = TapOffloads(rawValue: 0x20)
    /// TUN_F_USO6: UDP segmentation over IPv6; linux/if_tun.h since 6.2.
    public static let uso6 = TapOffloads(rawValue: 0x40)
}

/// A TAP interface opened for Ferry: one non-blocking descriptor per queue,
/// each frame preceded by a 12-byte virtio-net header (the mergeable-buffers
/// layout, so it matches what vhost-user guests use).
///
/// On reads the kernel writes the 10-byte `virtio_net_hdr` (flags, gso_type,
/// hdr_len, gso_size, csum_start, csum_offset; native byte order, little-endian
/// on every host Ferry runs on). Whether it also writes `num_buffers` depends on
/// the kernel (older ones skip those two bytes, newer ones zero them), so a
/// reader that forwards the header sets `num_buffers` itself.
///
/// Closing a TAP Ferry created removes it: it is never made persistent, so the
/// kernel deletes it when its last descriptor closes. A pre-existing persistent
/// TAP is only detached from and stays in place.
public final class TapDevice: @unchecked Sendable {
    /// Size of the virtio-net header on every frame (TUNSETVNETHDRSZ).
    public static let headerSize = 12
    public static let maxNameLength = PortLimits.interfaceNameLength
    public static let maxQueues = PortLimits.tapQueues

    /// The interface name as the kernel reports it after TUNSETIFF.
    public let name: String
    /// The interface index when it was opened.
    public let index: UInt32
    /// Whether Ferry created the interface (it did not exist before TUNSETIFF).
    public let created: Bool
    /// What the kernel may hand Ferry: the offloads last set, at open or by `setOffloads`.
    public private(set) var offloads: TapOffloads
    /// One descriptor per queue, for poll/epoll and the data path; owned by `queueFiles`.
    public private(set) var queueDescriptors: [Int32]
    /// The queues' descriptors, owned: closed by `close()` or with the device.
    private var queueFiles: [DescriptorSlot]
    /// The socket the SIOC*IF* requests go through, kept: the MTU is asked once a
    /// second (`PortWatch`), and a socket made and closed for each ask was most of
    /// that turn of the control thread (docs/PERFORMANCE.md, "Session 9: every slow
    /// reply accounted for"). Made in Ferry's network namespace, like each one before.
    private let control: FileDescriptor

    public var queueCount: Int { queueDescriptors.count }

    /// Opens (creating if needed) TAP `name` with `queues` queues
    /// (IFF_MULTI_QUEUE when more than one), sets its virtio-net header size and
    /// `offloads`, brings it up and, if given, sets its MTU. A name or queue
    /// count the kernel would refuse is an `InvalidArgument`, thrown before
    /// anything is opened; a failed call a `SystemError`.
    public convenience init(name: String, queues: Int = 1, offloads: TapOffloads = [], mtu: Int? = nil) throws {
        try self.init(name: name, queues: queues, offloads: offloads, mtu: mtu, clonePath: "/dev/net/tun")
    }

    /// As the public initializer, opening `clonePath` instead of /dev/net/tun (tests).
    init(name: String, queues: Int, offloads: TapOffloads, mtu: Int?, clonePath: String) throws {
        let nameBytes = Array(name.utf8)
        guard !nameBytes.isEmpty else {
            throw InvalidArgument("TAP name is empty")
        }
        guard nameBytes.count <= Self.maxNameLength else {
            throw InvalidArgument("TAP name too long: \(name) has \(nameBytes.count) bytes, at most \(Self.maxNameLength) (IFNAMSIZ)")
        }
        guard !nameBytes.contains(0) else {
            throw InvalidArgument("TAP name contains a NUL byte: \(name)")
        }
        guard queues >= 1, queues <= Self.maxQueues else {
            throw InvalidArgument("TAP \(name): \(queues) queues, must be 1...\(Self.maxQueues)")
        }

        let existed = if_nametoindex(name) != 0
        var flags = Int32(IFF_TAP) | Int32(IFF_NO_PI) | Int32(IFF_VNET_HDR)
        if queues > 1 { flags |= Int32(IFF_MULTI_QUEUE) }

        // Should a step fail, the queues opened so far close with `opened`:
        // a TAP we created goes away with its last descriptor.
        var opened: [DescriptorSlot] = []
        opened.reserveCapacity(queues)
        var kernelName = name
        for _ in 0..<queues {
            // Later queues attach by the name the kernel chose (a "tap%d" template
            // would otherwise create a second interface).
            let queue = try Self.openQueue(clonePath, name: kernelName, flags: flags, existed: existed || !opened.isEmpty,
                                           offloads: offloads)
            opened.append(queue.file)
            kernelName = queue.name
        }
        let control = try Self.controlSocket()
        try Self.bringUp(kernelName, socket: control.rawValue)
        if let mtu { try Self.setMTU(kernelName, mtu, socket: control.rawValue) }
        self.control = control
        self.name = kernelName
        self.index = if_nametoindex(kernelName)
        self.created = !existed
        self.offloads = offloads
        self.queueFiles = opened
        self.queueDescriptors = opened.map(\.rawValue)
    }

    deinit { close() }

    /// Closes every queue's descriptor. Idempotent; the owner calls it once the
    /// data path no longer touches the device.
    public func close() {
        queueDescriptors = []
        for file in queueFiles { file.close() }
        queueFiles = []
    }

    // MARK: Data path

    /// Reads one frame (header first) from `queue` into the caller's iovecs.
    /// `.done(0)` cannot happen on a TAP. A frame larger than the buffers is
    /// cut to fit, its rest discarded, and the count is what was copied
    /// (tun_chr_read_iter clamps it): a cut frame reads like one that filled the buffers exactly.
    @inlinable
    public func readv(queue: Int, _ iovecs: UnsafePointer<iovec>, count: Int) throws(SystemError) -> IOResult<Int> {
        let fd = queueDescriptors[queue]
        return try nonBlockingSyscall("readv(tap)", touchesGuestMemory: true) { Glibc.readv(fd, iovecs, Int32(count)) }
    }

    /// Writes one frame (header first) to `queue` from the caller's iovecs.
    /// EIO means the link is down; EINVAL a header the kernel refused.
    @inlinable
    public func writev(queue: Int, _ iovecs: UnsafePointer<iovec>, count: Int) throws(SystemError) -> IOResult<Int> {
        let fd = queueDescriptors[queue]
        return try nonBlockingSyscall("writev(tap)", touchesGuestMemory: true) { Glibc.writev(fd, iovecs, Int32(count)) }
    }

    /// Writes one frame, its header and bytes laid end to end at `bytes`, to `queue`:
    /// one buffer, which tun takes with less work than the same frame as iovecs.
    @inlinable
    public func write(queue: Int, _ bytes: UnsafeRawPointer, length: Int) throws(SystemError) -> IOResult<Int> {
        let fd = queueDescriptors[queue]
        return try nonBlockingSyscall("write(tap)") { Glibc.write(fd, bytes, length) }
    }

    // MARK: Offloads and buffering

    /// Changes the offloads at run time (TUNSETOFFLOAD). They belong to the
    /// interface, not to a queue, so one call on any queue's descriptor covers all.
    /// Frames queued for Ferry before the call keep the form they were queued in:
    /// one queued with a partial checksum still reads with NEEDS_CSUM after the
    /// checksum offload is turned off.
    public func setOffloads(_ offloads: TapOffloads) throws {
        guard let fd = queueDescriptors.first else {
            throw InvalidArgument("TUNSETOFFLOAD(\(name)): the TAP is closed")
        }
        try Self.setOffloads(fd, name: name, offloads)
        self.offloads = offloads
    }

    /// Bounds the bytes of frames Ferry wrote that the kernel still holds
    /// (TUNSETSNDBUF, for every queue). The default, INT_MAX, never stops a
    /// writer: what a stalled path behind the TAP holds piles up in the kernel
    /// (up to its qdiscs' limits) and a write never returns EAGAIN. With a
    /// bound, writes past it return EAGAIN until the kernel frees some.
    public func setSendBuffer(bytes: Int) throws {
        guard let fd = queueDescriptors.first else {
            throw InvalidArgument("TUNSETSNDBUF(\(name)): the TAP is closed")
        }
        guard var value = Int32(exactly: bytes), value > 0 else {
            throw InvalidArgument("TUNSETSNDBUF(\(name), \(bytes)): must be 1...\(Int32.max)")
        }
        _ = try syscall("TUNSETSNDBUF(\(name), \(bytes))") { ferry_ioctl_pointer(fd, FERRY_TUNSETSNDBUF, &value) }
    }

    /// Runs BPF socket filter `program` on every frame the kernel sends on
    /// the interface (TUNSETFILTEREBPF; its return value is the length tun keeps).
    /// It belongs to the interface, like the offloads: one call on any queue covers all.
    public func setFilterProgram(_ program: Int32) throws {
        guard let fd = queueDescriptors.first else {
            throw InvalidArgument("TUNSETFILTEREBPF(\(name)): the TAP is closed")
        }
        var descriptor = program
        _ = try syscall("TUNSETFILTEREBPF(\(name))") { ferry_ioctl_pointer(fd, FERRY_TUNSETFILTEREBPF, &descriptor) }
    }

    // MARK: Link state

    /// Whether the interface is administratively up (IFF_UP).
    public func isUp() throws(SystemError) -> Bool {
        var request = Self.request(name)
        _ = try syscall("SIOCGIFFLAGS(\(name))") { ferry_ioctl_pointer(control.rawValue, UInt(SIOCGIFFLAGS), &request) }
        return Int32(request.ifr_ifru.ifru_flags) & Int32(IFF_UP) != 0
    }

    /// The interface's MTU (SIOCGIFMTU).
    public func mtu() throws(SystemError) -> Int {
        var request = Self.request(name)
        _ = try syscall("SIOCGIFMTU(\(name))") { ferry_ioctl_pointer(control.rawValue, UInt(SIOCGIFMTU), &request) }
        return Int(request.ifr_ifru.ifru_mtu)
    }

    /// Sets the interface's MTU (SIOCSIFMTU); the TAP driver accepts 68...65521.
    public func setMTU(_ mtu: Int) throws {
        try Self.setMTU(name, mtu, socket: control.rawValue)
    }

    // MARK: Setup steps

    private static func openQueue(_ clonePath: String, name: String, flags: Int32, existed: Bool, offloads: TapOffloads)
        throws(SystemError) -> (file: DescriptorSlot, name: String)
    {
        let raw: Int32
        do throws(SystemError) {
            raw = try syscall("open(\(clonePath))") { open(clonePath, O_RDWR | O_NONBLOCK | O_CLOEXEC) }
        } catch {
            switch error.errno {
            case ENOENT, ENODEV, ENXIO:
                throw SystemError("open(\(clonePath)): no TUN/TAP support (load the tun module, "
                                  + "or give a container the device)", errno: error.errno)
            default: throw error
            }
        }
        let fd = FileDescriptor(owning: raw)
        var request = Self.request(name)
        request.ifr_ifru.ifru_flags = Int16(truncatingIfNeeded: flags)
        do throws(SystemError) {
            _ = try syscall("TUNSETIFF(\(name))") { ferry_ioctl_pointer(raw, FERRY_TUNSETIFF, &request) }
        } catch {
            switch error.errno {
            case EPERM:
                throw SystemError("TUNSETIFF(\(name)): creating or attaching a TAP needs CAP_NET_ADMIN", errno: EPERM)
            case EBUSY:
                throw SystemError("TUNSETIFF(\(name)): the TAP is already attached to another process", errno: EBUSY)
            case EINVAL where existed:
                throw SystemError("TUNSETIFF(\(name)): an interface of that name exists but is not a TAP, "
                                  + "or its multi-queue setting differs", errno: EINVAL)
            default: throw error
            }
        }
        var headerSize = Int32(Self.headerSize)
        _ = try syscall("TUNSETVNETHDRSZ(\(name))") { ferry_ioctl_pointer(raw, FERRY_TUNSETVNETHDRSZ, &headerSize) }
        try Self.setOffloads(raw, name: name, offloads)
        let kernelName = withUnsafeBytes(of: &request.ifr_ifrn.ifrn_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return (DescriptorSlot(fd), kernelName)
    }

    private static func setOffloads(_ fd: Int32, name: String, _ offloads: TapOffloads) throws(SystemError) {
        do throws(SystemError) {
            _ = try syscall("TUNSETOFFLOAD(\(name))") { ferry_ioctl_value(fd, FERRY_TUNSETOFFLOAD, UInt(offloads.rawValue)) }
        } catch where error.errno == EINVAL {
            // tun.c's set_offload refuses bits it does not know, and TSO without CSUM.
            throw SystemError("TUNSETOFFLOAD(\(name), 0x\(String(offloads.rawValue, radix: 16))): offloads refused "
                              + "(TSO needs checksum; unknown bits on this kernel)", errno: EINVAL)
        }
    }

    /// A datagram socket for the SIOC*IF* requests, which any socket family accepts.
    private static func controlSocket() throws(SystemError) -> FileDescriptor {
        FileDescriptor(owning: try syscall("socket(AF_INET, SOCK_DGRAM)") {
            socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        })
    }

    /// An ifreq naming `name`, for the SIOC*IF* requests (NetworkInterface asks the MTU with one too).
    /// Every name given here was checked first: by `init` (or it is the kernel's own), or by
    /// `NetworkInterface.index(of:)`.
    static func request(_ name: String) -> ifreq {
        var request = ifreq()
        let bytes = Array(name.utf8)
        precondition(bytes.count <= maxNameLength, "interface name \(name) reached an ifreq unchecked")
        withUnsafeMutableBytes(of: &request.ifr_ifrn.ifrn_name) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return request
    }

    private static func bringUp(_ name: String, socket: Int32) throws(SystemError) {
        var request = Self.request(name)
        _ = try syscall("SIOCGIFFLAGS(\(name))") { ferry_ioctl_pointer(socket, UInt(SIOCGIFFLAGS), &request) }
        let current = request.ifr_ifru.ifru_flags
        if Int32(current) & Int32(IFF_UP) != 0 { return }
        request.ifr_ifru.ifru_flags = current | Int16(truncatingIfNeeded: Int32(IFF_UP))
        _ = try syscall("SIOCSIFFLAGS(\(name), IFF_UP)") { ferry_ioctl_pointer(socket, UInt(SIOCSIFFLAGS), &request) }
    }

    private static func setMTU(_ name: String, _ mtu: Int, socket: Int32) throws {
        guard let value = Int32(exactly: mtu), value > 0 else {
            throw InvalidArgument("SIOCSIFMTU(\(name)): MTU \(mtu) out of range")
        }
        var request = Self.request(name)
        request.ifr_ifru.ifru_mtu = value
        _ = try syscall("SIOCSIFMTU(\(name), \(mtu))") { ferry_ioctl_pointer(socket, UInt(SIOCSIFMTU), &request) }
    }
}
