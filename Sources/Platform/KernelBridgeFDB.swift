import CFerry
import Glibc
import Model

/// The kernel bridge forwarding database an EVPN vxlan port shares with FRR's
/// zebra, over rtnetlink: two sockets, one subscribed to neighbour changes
/// (RTMGRP_NEIGH; the control loop polls it) and one for requests and dumps,
/// which waits for each answer (the kernel answers at once; a second at most).
///
/// It resolves the two devices once, at open: `vxlanIndex` (where zebra
/// installs remote MACs and the flood list) and `bridgePortIndex` (where
/// Ferry's local MACs go). A device renamed or recreated later needs the port
/// opened again.
public final class KernelBridgeFDB {
    public let devices: EvpnDevices
    public let vxlanIndex: Int32
    public let bridgePortIndex: Int32
    let events: FileDescriptor
    let requests: FileDescriptor
    private var sequence: UInt32 = 1
    public var counters = EvpnCounters()
    /// One datagram's room; the kernel cuts a longer one (MSG_TRUNC), which is then refused.
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)

    public init(devices: EvpnDevices) throws {
        self.devices = devices
        vxlanIndex = Int32(try NetworkInterface.index(of: devices.vxlanDevice))
        bridgePortIndex = Int32(try NetworkInterface.index(of: devices.bridgePort))
        events = try Self.open(groups: RTNetlink.neighbourGroup, nonBlocking: true)
        requests = try Self.open(groups: 0, nonBlocking: false)
        // A request never waits longer than this for the kernel's answer.
        var wait = timeval(tv_sec: 1, tv_usec: 0)
        let fd = requests.rawValue
        _ = try syscall("setsockopt(SO_RCVTIMEO)") {
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        }
    }

    private static func open(groups: UInt32, nonBlocking: Bool) throws(SystemError) -> FileDescriptor {
        let type = Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        let socket = FileDescriptor(owning: try syscall("socket(AF_NETLINK, NETLINK_ROUTE)") {
            Glibc.socket(AF_NETLINK, type, 0)
        })
        var size: Int32 = 1 << 20
        let fd = socket.rawValue
        _ = try syscall("setsockopt(SO_RCVBUF)") {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        // struct sockaddr_nl: family, pad, port id (0: the kernel picks), groups.
        var address = sockaddr_nl()
        address.nl_family = sa_family_t(AF_NETLINK)
        address.nl_groups = groups
        // SAFETY: the kernel reads sizeof(sockaddr_nl) bytes of `address`, which lives through the call.
        _ = try syscall("bind(AF_NETLINK)") {
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
                }
            }
        }
        return socket
    }

    /// Readable while a change waits.
    public var descriptor: Int32 { events.rawValue }

    /// What arrived on the change socket: each message parsed (nil: not a bridge
    /// entry) or refused; `overrun` when the kernel dropped changes for want of
    /// room, after which only a dump tells the whole table again.
    public func receiveChanges() -> (entries: [Result<BridgeNeighbour?, NetlinkInputError>], overrun: Bool) {
        var entries: [Result<BridgeNeighbour?, NetlinkInputError>] = []
        let fd = events.rawValue
        while true {
            let length: Int
            do throws(SystemError) {
                // SAFETY: the kernel writes at most buffer.count bytes; with MSG_TRUNC it returns the
                // datagram's whole length, checked against buffer.count before any byte is read.
                switch try nonBlockingSyscall("recv(netlink changes)", { () -> Int in
                    buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_TRUNC)) }
                }) {
                case .wouldBlock: return (entries, false)
                case .done(let n): length = n
                }
            } catch {
                if error.errno == ENOBUFS { return (entries, true) }
                entries.append(.failure(.kernelError(error.errno)))
                return (entries, false)
            }
            guard length <= buffer.count else {
                entries.append(.failure(.badMessageLength(UInt32(truncatingIfNeeded: length), available: buffer.count)))
                continue
            }
            switch RTNetlink.messages(in: buffer[0..<length]) {
            case .failure(let error): entries.append(.failure(error))
            case .success(let messages): entries += messages.map(BridgeNeighbour.parse)
            }
        }
    }

    /// Every bridge FDB entry the kernel holds, of every device.
    public func dump() throws -> [Result<BridgeNeighbour?, NetlinkInputError>] {
        let sequence = next()
        try send(BridgeNeighbour.dumpRequest(sequence: sequence))
        var entries: [Result<BridgeNeighbour?, NetlinkInputError>] = []
        while true {
            for message in try receiveAnswer(sequence) {
                switch message.type {
                case RTNetlink.messageDone: return entries
                case RTNetlink.messageError:
                    switch RTNetlink.errorCode(message.payload) {
                    case .success(let code): throw NetlinkInputError.kernelError(code)
                    case .failure(let error): throw error
                    }
                default: entries.append(BridgeNeighbour.parse(message))
                }
            }
        }
    }

    /// Puts `mac` on the bridge port as a static entry (`bridge fdb replace MAC dev
    /// PORT master static`): never aged by the kernel, and taken by zebra as local.
    public func addLocal(mac: UInt64) throws {
        try change(BridgeNeighbour(change: .added, interfaceIndex: bridgePortIndex, mac: mac,
                                   state: RTNetlink.nudNoARP, flags: RTNetlink.ntfMaster))
    }

    /// Takes `mac` off the bridge port; not there (it moved to the vxlan device, or was
    /// never written) is no error.
    public func removeLocal(mac: UInt64) throws {
        do {
            try change(BridgeNeighbour(change: .removed, interfaceIndex: bridgePortIndex, mac: mac,
                                       state: RTNetlink.nudNoARP, flags: RTNetlink.ntfMaster))
        } catch NetlinkInputError.kernelError(ENOENT) {}
    }

    /// Takes every static entry off the bridge port (Ferry's, when it stops: zebra
    /// then withdraws their routes); errors are left to the next start's resynchronisation.
    public func removeAllLocal() {
        guard let entries = try? dump() else { return }
        for case .success(let entry?) in entries
        where entry.interfaceIndex == bridgePortIndex && entry.state & RTNetlink.nudNoARP != 0 {
            try? removeLocal(mac: entry.mac)
        }
    }

    private func change(_ entry: BridgeNeighbour) throws {
        let sequence = next()
        try send(entry.request(sequence: sequence))
        while true {
            for message in try receiveAnswer(sequence) where message.type == RTNetlink.messageError {
                switch RTNetlink.errorCode(message.payload) {
                case .success(0): return
                case .success(let code): throw NetlinkInputError.kernelError(code)
                case .failure(let error): throw error
                }
            }
        }
    }

    private func next() -> UInt32 {
        sequence &+= 1
        return sequence
    }

    private func send(_ bytes: [UInt8]) throws(SystemError) {
        let fd = requests.rawValue
        // SAFETY: the kernel reads bytes.count bytes of the array, alive through the call.
        _ = try syscall("send(netlink request)") { bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) } }
    }

    /// The messages of the next datagram answering `sequence` (others, late answers to a
    /// request that timed out, are passed over).
    private func receiveAnswer(_ sequence: UInt32) throws -> [RTNetlink.Message] {
        let fd = requests.rawValue
        while true {
            // SAFETY: as in receiveChanges: at most buffer.count bytes written, the length checked first.
            let length = try syscall("recv(netlink answer)") { () -> Int in
                buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_TRUNC)) }
            }
            guard length <= buffer.count else {
                throw NetlinkInputError.badMessageLength(UInt32(truncatingIfNeeded: length), available: buffer.count)
            }
            let messages = try RTNetlink.messages(in: buffer[0..<length]).get()
            let answers = messages.filter { $0.sequence == sequence }
            if !answers.isEmpty { return answers }
        }
    }
}

/// What an EVPN port's link to the kernel table refused or missed, for
/// `ferry ctl show vteps`' summary and metrics. Control thread only.
public struct EvpnCounters: Equatable, Sendable {
    /// Messages from the kernel refused (malformed, another family's VTEP, another VNI...).
    public var refused: UInt64 = 0
    /// Local MACs the kernel would not take or give up.
    public var writeFailures: UInt64 = 0
    /// Times the change socket overran and the table was read again.
    public var overruns: UInt64 = 0

    public init() {}
}
