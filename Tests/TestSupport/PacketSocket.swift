import CFerry
import Glibc
import Platform

/// An AF_PACKET socket (packet(7)) bound to one interface: what it sends, the
/// kernel transmits on the interface; it receives what the interface received
/// and, unless `ignoreOutgoing`, what it transmitted. For tests, so it copies freely.
public final class PacketSocket {
    /// ETH_P_ALL (<linux/if_ether.h>): every protocol.
    static let allProtocols = UInt16(0x0003).bigEndian

    public let fd: Int32
    private let ownedDescriptor: FileDescriptor
    /// Whether every frame sent and received starts with a 10-byte virtio_net_hdr (PACKET_VNET_HDR).
    public let vnetHeader: Bool

    public init(interface index: UInt32, vnetHeader: Bool = false, ignoreOutgoing: Bool = false) throws(SystemError) {
        // Protocol 0 receives nothing until bind names one, so no frame of
        // another interface slips in before the bind.
        let raw = try syscall("socket(AF_PACKET)") {
            socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        let owned = FileDescriptor(owning: raw)
        var one: Int32 = 1
        let size = socklen_t(MemoryLayout<Int32>.size)
        if vnetHeader {
            _ = try syscall("setsockopt(PACKET_VNET_HDR)") { setsockopt(raw, SOL_PACKET, PACKET_VNET_HDR, &one, size) }
        }
        if ignoreOutgoing {
            _ = try syscall("setsockopt(PACKET_IGNORE_OUTGOING)") {
                setsockopt(raw, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, size)
            }
        }
        var address = sockaddr_ll()
        address.sll_family = UInt16(AF_PACKET)
        address.sll_protocol = Self.allProtocols
        address.sll_ifindex = Int32(bitPattern: index)
        _ = try syscall("bind(AF_PACKET, \(index))") {
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(raw, $0, socklen_t(MemoryLayout<sockaddr_ll>.size))
                }
            }
        }
        fd = raw
        ownedDescriptor = owned
        self.vnetHeader = vnetHeader
    }

    /// Sends one frame (with its virtio_net_hdr first if `vnetHeader`).
    public func send(_ frame: [UInt8]) throws(SystemError) {
        let sent = try syscall("send(AF_PACKET, \(frame.count) bytes)") {
            frame.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
        }
        guard sent == frame.count else {
            throw SystemError("send(AF_PACKET): \(sent) of \(frame.count) bytes", errno: EMSGSIZE)
        }
    }

    /// The next frame, waiting up to `timeout` seconds; nil if none came.
    public func receive(timeout: Double, capacity: Int = 65_536) throws(SystemError) -> [UInt8]? {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = try syscall("poll(AF_PACKET)") { poll(&pfd, 1, Int32(timeout * 1000)) }
        guard ready > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: capacity)
        let result = try nonBlockingSyscall("recv(AF_PACKET)") {
            buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        }
        guard case .done(let count) = result else { return nil }
        return Array(buffer.prefix(count))
    }

    /// Discards every frame queued now.
    public func drain() throws(SystemError) {
        while try receive(timeout: 0) != nil {}
    }
}
