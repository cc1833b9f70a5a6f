import CFerry
import Glibc
import Model

/// The two kernel sockets of a UDP tunnel's underlay (a vxlan port).
///
/// Received datagrams come through an ordinary UDP socket bound to the local
/// address and port: the kernel finds the port and checks the UDP checksum.
/// Sent ones leave through a raw socket (IPPROTO_UDP) whose UDP header the
/// caller writes: a bound UDP socket sends from one fixed port, and a tunnel
/// wants a source port per inner flow (RFC 7348 §5) so that a fabric's ECMP
/// spreads its flows. The kernel adds the IP header from the bound local
/// address; over IPv4 the UDP checksum is left zero (RFC 7348 §5), over IPv6
/// the kernel computes it (IPV6_CHECKSUM), as RFC 8200 asks. Neither
/// fragments: a datagram longer than the path's MTU fails (EMSGSIZE).
/// The raw socket needs CAP_NET_RAW. Runs of datagrams of one flow go
/// through `FlowSenders` instead (UDP GSO takes a UDP socket).
public enum TunnelSockets {
    /// A non-blocking UDP socket bound to `local`:`port`, with a receive buffer of
    /// `receiveBuffer` bytes (or what net.core.rmem_max allows).
    public static func receiver(local: InternetAddress, port: UInt16, receiveBuffer: Int) throws(SystemError)
        -> FileDescriptor
    {
        let family = local.isIPv6 ? AF_INET6 : AF_INET
        let fd = FileDescriptor(owning: try syscall("socket(UDP)") {
            socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        })
        let raw = fd.rawValue
        try setOption(raw, SOL_SOCKET, SO_RCVBUF, Int32(clamping: receiveBuffer), "SO_RCVBUF")
        if local.isIPv6 {
            // Only IPv6 datagrams on an IPv6 socket, and zero checksums from
            // senders that leave them so (UDP_NO_CHECK6_RX, RFC 6935).
            try setOption(raw, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1, "IPV6_V6ONLY")
            try setOption(raw, Int32(IPPROTO_UDP), 102, 1, "UDP_NO_CHECK6_RX")
        }
        try bind(raw, local, port: port)
        return fd
    }

    /// A non-blocking raw IPPROTO_UDP socket sending from `local`; it receives
    /// nothing (a filter that accepts no packet: a raw UDP socket would get a
    /// copy of every UDP datagram the host receives).
    public static func sender(local: InternetAddress, sendBuffer: Int) throws(SystemError) -> FileDescriptor {
        let family = local.isIPv6 ? AF_INET6 : AF_INET
        let fd = FileDescriptor(owning: try syscall("socket(SOCK_RAW, IPPROTO_UDP)") {
            socket(family, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
                   Int32(IPPROTO_UDP))
        })
        let raw = fd.rawValue
        try PacketFilter.nothing.attach(to: raw, "raw UDP sender")
        try setOption(raw, SOL_SOCKET, SO_SNDBUF, Int32(clamping: sendBuffer), "SO_SNDBUF")
        if local.isIPv6 {
            // The kernel fills the UDP checksum at offset 6 of what we send.
            try setOption(raw, Int32(IPPROTO_IPV6), 7 /* IPV6_CHECKSUM */, 6, "IPV6_CHECKSUM")
            try setOption(raw, Int32(IPPROTO_IPV6), 23 /* IPV6_MTU_DISCOVER */, 2 /* IPV6_PMTUDISC_DO */,
                          "IPV6_MTU_DISCOVER")
            try setOption(raw, Int32(IPPROTO_IPV6), 62 /* IPV6_DONTFRAG */, 1, "IPV6_DONTFRAG")
        } else {
            try setOption(raw, Int32(IPPROTO_IP), IP_MTU_DISCOVER, 2 /* IP_PMTUDISC_DO */, "IP_MTU_DISCOVER")
        }
        try bind(raw, local, port: 0)
        return fd
    }

    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32,
                                  _ label: String) throws(SystemError) {
        var v = value
        _ = try syscall("setsockopt(\(label))") { setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) }
    }

    static func bind(_ fd: Int32, _ local: InternetAddress, port: UInt16) throws(SystemError) {
        var storage = sockaddr_in6()
        let length = local.socketAddressLength
        withUnsafeMutableBytes(of: &storage) { local.writeSocketAddress(port: port, to: $0.baseAddress!) }
        _ = try syscall("bind(\(local) port \(port))") {
            withUnsafePointer(to: &storage) {
                // SAFETY: `storage` is a sockaddr_in6, room for either family, starting with its family
                // like every sockaddr; the kernel reads `length` <= its size bytes
                // (writeSocketAddress's length for the family).
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(length)) }
            }
        }
    }
}

extension PacketFilter {
    /// Accepts no packet: a socket that only sends.
    public static let nothing = PacketFilter([sock_filter(code: FERRY_BPF_RET_K, jt: 0, jf: 0, k: 0)])
}

extension NetworkInterface {
    /// The interface that holds `address` (getifaddrs), nil when none does.
    public static func name(holding address: InternetAddress) -> String? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return nil }
        defer { freeifaddrs(first) }
        var entry: UnsafeMutablePointer<ifaddrs>? = first
        while let e = entry {
            if let sa = e.pointee.ifa_addr, let found = InternetAddress(socketAddress: UnsafeRawPointer(sa)),
               found == address {
                return String(cString: e.pointee.ifa_name)
            }
            entry = e.pointee.ifa_next
        }
        return nil
    }
}

/// The UDP sockets of a tunnel's segmented sends (UDP GSO, `UDP_SEGMENT`),
/// which only a UDP socket takes and which leave with the socket's own port:
/// one socket per source port a flow hash may pick, bound to the local
/// address on distinct ports of the dynamic range (from `firstTried` on, the
/// next free ones). They receive nothing (a filter that accepts no packet).
/// The kernel fills their UDP checksums (GSO needs them) and never fragments.
/// Closed together when their owner goes away.
public final class FlowSenders: Sendable {
    public let descriptors: [Int32]
    public let ports: [UInt16]

    public init(local: InternetAddress, count: Int, firstTried: UInt16, sendBuffer: Int) throws(SystemError) {
        let family = local.isIPv6 ? AF_INET6 : AF_INET
        let rangeStart = 49_152
        let rangeSize = 65_536 - rangeStart
        var made: [Int32] = []
        var ports: [UInt16] = []
        var candidate = max(Int(firstTried), rangeStart) - rangeStart
        var tried = 0
        do throws(SystemError) {
            while made.count < count {
                guard tried < rangeSize else {
                    throw SystemError("bind(\(local), a free port from 49152)", errno: EADDRINUSE)
                }
                let port = UInt16(rangeStart + candidate % rangeSize)
                candidate += 1
                tried += 1
                let fd = FileDescriptor(owning: try syscall("socket(UDP)") {
                    socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
                               | Int32(SOCK_NONBLOCK.rawValue), 0)
                })
                let raw = fd.rawValue
                try PacketFilter.nothing.attach(to: raw, "UDP flow sender")
                try TunnelSockets.setOption(raw, SOL_SOCKET, SO_SNDBUF, Int32(clamping: sendBuffer), "SO_SNDBUF")
                if local.isIPv6 {
                    try TunnelSockets.setOption(raw, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1, "IPV6_V6ONLY")
                    try TunnelSockets.setOption(raw, Int32(IPPROTO_IPV6), 23 /* IPV6_MTU_DISCOVER */,
                                                2 /* IPV6_PMTUDISC_DO */, "IPV6_MTU_DISCOVER")
                    try TunnelSockets.setOption(raw, Int32(IPPROTO_IPV6), 62 /* IPV6_DONTFRAG */, 1, "IPV6_DONTFRAG")
                } else {
                    try TunnelSockets.setOption(raw, Int32(IPPROTO_IP), IP_MTU_DISCOVER, 2 /* IP_PMTUDISC_DO */,
                                                "IP_MTU_DISCOVER")
                }
                do throws(SystemError) {
                    try TunnelSockets.bind(raw, local, port: port)
                } catch where error.errno == EADDRINUSE {
                    continue
                }
                made.append(fd.release())
                ports.append(port)
            }
        } catch {
            for d in made { _ = Glibc.close(d) }
            throw error
        }
        descriptors = made
        self.ports = ports
    }

    deinit {
        for d in descriptors { _ = Glibc.close(d) }
    }
}
