import CFerry
import Glibc
import Model
import Platform

/// A plain UDP socket on a loopback address, playing a remote VTEP for a
/// vxlan port's tests: sends datagrams to the port, receives what it sends.
public final class UDPPeer {
    public let address: InternetAddress
    public let port: UInt16
    let fd: Int32

    /// A loopback UDP port number of this process's own, so parallel test runs differ.
    public static let testPort = UInt16(40_000 + Int(getpid()) % 20_000)

    public init(_ text: String, port: UInt16 = UDPPeer.testPort) throws {
        address = InternetAddress(text)!
        self.port = port
        let family = address.isIPv6 ? AF_INET6 : AF_INET
        fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket", errno: errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var storage = sockaddr_in6()
        withUnsafeMutableBytes(of: &storage) { address.writeSocketAddress(port: port, to: $0.baseAddress!) }
        let length = socklen_t(address.socketAddressLength)
        let rc = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard rc == 0 else { throw SystemError("bind \(text)", errno: errno) }
    }

    deinit { close(fd) }

    /// A raw IPv4 UDP socket (the caller closes it): it sees every UDP datagram's header.
    public static func rawIPv4UDPSocket() -> Int32 {
        socket(AF_INET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_UDP))
    }

    /// Sends `payload` (a VXLAN header and what follows) to `to`:`port`.
    public func send(_ payload: [UInt8], to: InternetAddress, port: UInt16 = UDPPeer.testPort) {
        var storage = sockaddr_in6()
        withUnsafeMutableBytes(of: &storage) { to.writeSocketAddress(port: port, to: $0.baseAddress!) }
        let length = socklen_t(to.socketAddressLength)
        _ = payload.withUnsafeBytes { bytes in
            withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, bytes.baseAddress, bytes.count, 0, $0, length)
                }
            }
        }
    }

    /// The next datagram (payload and the sender's UDP source port), or nil after 200 ms.
    public func receive() -> (payload: [UInt8], sourcePort: UInt16)? {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var storage = sockaddr_in6()
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        let n = buffer.withUnsafeMutableBytes { bytes in
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, bytes.baseAddress, bytes.count, 0, $0, &length) }
            }
        }
        guard n >= 0 else { return nil }
        return (Array(buffer[..<n]), UInt16(bigEndian: storage.sin6_port))
    }

    /// Every datagram that arrives within 200 ms of the last.
    public func receiveAll() -> [[UInt8]] {
        var all: [[UInt8]] = []
        while let d = receive() { all.append(d.payload) }
        return all
    }
}

/// A VXLAN header: flags (the I flag unless `validFlag` is false), VNI.
public func vxlanHeader(vni: UInt32, validFlag: Bool = true) -> [UInt8] {
    [validFlag ? 0x08 : 0x00, 0, 0, 0, UInt8(vni >> 16 & 0xFF), UInt8(vni >> 8 & 0xFF), UInt8(vni & 0xFF), 0]
}
