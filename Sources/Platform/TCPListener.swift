import CFerry
import Glibc

/// A TCP listening address as people write it: `ADDR:PORT`, with an IPv6
/// address in brackets (`[::1]:9469`, RFC 3986 §3.2.2) since its colons would
/// otherwise swallow the port.
public struct ListenAddress: Equatable, Sendable, CustomStringConvertible {
    public enum Host: Equatable, Sendable {
        case v4(in_addr_t)
        case v6([UInt8])
    }

    public let host: Host
    public let port: UInt16
    public let text: String

    public var description: String { text }

    /// nil when `text` is not `IPV4:PORT` or `[IPV6]:PORT`; port 0 lets the kernel choose (tests).
    public init?(_ text: String) {
        self.text = text
        let hostText: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            hostText = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            hostText = text[..<colon]
            portText = text[text.index(after: colon)...]
            if hostText.contains(":") { return nil }
        }
        guard let port = UInt16(portText) else { return nil }
        self.port = port
        if text.hasPrefix("[") {
            var address = in6_addr()
            guard inet_pton(AF_INET6, String(hostText), &address) == 1 else { return nil }
            host = .v6(withUnsafeBytes(of: address) { Array($0) })
        } else {
            var address = in_addr()
            guard inet_pton(AF_INET, String(hostText), &address) == 1 else { return nil }
            host = .v4(address.s_addr)
        }
    }
}

/// Non-blocking TCP listening sockets, for the metrics endpoint.
public enum TCPListener {
    public static func listen(_ address: ListenAddress, backlog: Int32 = 16) throws(SystemError) -> FileDescriptor {
        let family = if case .v4 = address.host { AF_INET } else { AF_INET6 }
        let fd = FileDescriptor(owning: try syscall("socket(TCP)") {
            socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        })
        let raw = fd.rawValue
        // A restarted Ferry rebinds at once instead of waiting out TIME_WAIT.
        var on: Int32 = 1
        _ = try syscall("setsockopt(SO_REUSEADDR)") {
            setsockopt(raw, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        }
        switch address.host {
        case .v4(let host):
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = address.port.bigEndian
            sa.sin_addr.s_addr = host
            try bind(raw, &sa, address)
        case .v6(let host):
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = address.port.bigEndian
            withUnsafeMutableBytes(of: &sa.sin6_addr) { $0.copyBytes(from: host) }
            try bind(raw, &sa, address)
        }
        _ = try syscall("listen(\(address))") { Glibc.listen(raw, backlog) }
        return fd
    }

    /// bind(2) with a sockaddr_in or sockaddr_in6.
    private static func bind<Address>(_ fd: Int32, _ sa: inout Address, _ address: ListenAddress) throws(SystemError) {
        _ = try syscall("bind(\(address))") {
            withUnsafePointer(to: &sa) {
                // SAFETY: `sa` is the sockaddr_in or sockaddr_in6 the caller built, which starts with
                // its family like every sockaddr; the kernel reads MemoryLayout<Address>.size bytes of
                // it.
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.bind(fd, $0, socklen_t(MemoryLayout<Address>.size))
                }
            }
        }
    }

    /// The port a listener is bound to: the one given, or the one the kernel chose for port 0.
    public static func localPort(_ fd: Int32) -> UInt16? {
        var storage = sockaddr_in6()
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            // SAFETY: `storage` is a sockaddr_in6, room for either family; the kernel writes at most
            // `length` (its size) bytes.
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0 else { return nil }
        // sin_port and sin6_port sit at the same offset (2) in both layouts.
        return UInt16(bigEndian: storage.sin6_port)
    }
}
