import CFerry
import Glibc
import Model

/// Where the kernel would send a packet to a remote address, asked over
/// rtnetlink: the route's next hop (RTM_GETROUTE: the gateway, or the address
/// itself on a connected subnet, and the interface), then that next hop's MAC
/// in the neighbour table (RTM_GETNEIGH for one address, kernel 4.20+). A
/// port that writes its own Ethernet headers (a vxlan port sending through an
/// `xdp:` uplink) asks this on the control thread, never per packet.
///
/// Every answer is checked as `RTNetlink.messages` and `BridgeNeighbour.parse`
/// check theirs: a message or attribute that overruns what arrived is refused.
public final class NeighbourLookup {
    let socket: FileDescriptor
    private var sequence: UInt32 = 1
    private var buffer = [UInt8](repeating: 0, count: 16 * 1024)

    /// The route to an address: the neighbour to send to and through which interface.
    public struct NextHop: Equatable, Sendable {
        public var address: InternetAddress
        public var interfaceIndex: Int32
    }

    /// A neighbour table entry: its MAC (first byte most significant) and NUD state.
    public struct Neighbour: Equatable, Sendable {
        public var mac: UInt64
        public var state: UInt16

        /// Known but unconfirmed for a while: the kernel confirms it only when it sends itself.
        public var isStale: Bool { state & (Self.stale | Self.delay | Self.probe) != 0 }
        static let stale: UInt16 = 0x04
        static let delay: UInt16 = 0x08
        static let probe: UInt16 = 0x10
        /// INCOMPLETE or FAILED: no usable address.
        static let unusable: UInt16 = 0x01 | 0x20
    }

    public init() throws(SystemError) {
        let type = Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        socket = FileDescriptor(owning: try syscall("socket(AF_NETLINK, NETLINK_ROUTE)") {
            Glibc.socket(AF_NETLINK, type, 0)
        })
        let fd = socket.rawValue
        // A lookup never waits longer than this for the kernel's answer (it answers at once).
        var wait = timeval(tv_sec: 1, tv_usec: 0)
        _ = try syscall("setsockopt(SO_RCVTIMEO)") {
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        }
    }

    /// The next hop toward `destination`; throws when there is no route (ENETUNREACH...).
    public func nextHop(to destination: InternetAddress) throws -> NextHop {
        let family: UInt8 = destination.isIPv6 ? UInt8(AF_INET6) : UInt8(AF_INET)
        let address = Self.networkBytes(destination)
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags (u32).
        var body: [UInt8] = [family, UInt8(address.count * 8), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        body += Self.attribute(Self.routeDestination, address)
        let answer = try ask(type: Self.getRoute, body: body)
        guard answer.type == Self.newRoute else { throw NetlinkInputError.truncatedHeader(0) }
        let p = answer.payload
        guard p.count >= Self.rtmsgSize else { throw NetlinkInputError.truncatedHeader(p.count) }
        var gateway: InternetAddress?
        var interface: Int32 = 0
        for (type, value) in try Self.attributes(p.dropFirst(Self.rtmsgSize)) {
            switch type {
            case Self.routeGateway:
                gateway = try Self.address(value, type: type)
            case Self.routeOutputInterface:
                guard value.count == 4 else { throw NetlinkInputError.badAttributeSize(type: type, length: value.count) }
                interface = Int32(bitPattern: RTNetlink.read32(value, value.startIndex))
            default:
                break
            }
        }
        return NextHop(address: gateway ?? destination, interfaceIndex: interface)
    }

    /// The neighbour table's entry for `address` on interface `index`; nil when
    /// there is none, or only one being resolved (INCOMPLETE) or that failed.
    public func neighbour(_ address: InternetAddress, interfaceIndex index: Int32) throws -> Neighbour? {
        let family: UInt8 = address.isIPv6 ? UInt8(AF_INET6) : UInt8(AF_INET)
        // struct ndmsg: family, pad, pad, ifindex (i32), state (u16), flags, type.
        var body: [UInt8] = [family, 0, 0, 0]
        withUnsafeBytes(of: index.littleEndian) { body += $0 }
        body += [0, 0, 0, 0]
        body += Self.attribute(RTNetlink.attributeDestination, Self.networkBytes(address))
        let answer: RTNetlink.Message
        do {
            answer = try ask(type: RTNetlink.getNeighbour, body: body)
        } catch NetlinkInputError.kernelError(ENOENT) {
            return nil
        }
        guard answer.type == RTNetlink.newNeighbour else { return nil }
        let p = answer.payload
        guard p.count >= RTNetlink.ndmsgSize else { throw NetlinkInputError.truncatedHeader(p.count) }
        let state = RTNetlink.read16(p, p.startIndex + 8)
        if state & Neighbour.unusable != 0 { return nil }
        for (type, value) in try Self.attributes(p.dropFirst(RTNetlink.ndmsgSize)) where type == RTNetlink.attributeLLAddress {
            guard value.count == 6 else { throw NetlinkInputError.badAttributeSize(type: type, length: value.count) }
            return Neighbour(mac: value.reduce(0) { $0 << 8 | UInt64($1) }, state: state)
        }
        return nil
    }

    // MARK: rtnetlink

    static let newRoute: UInt16 = 24
    static let getRoute: UInt16 = 26
    static let rtmsgSize = 12
    static let routeDestination: UInt16 = 1
    static let routeOutputInterface: UInt16 = 4
    static let routeGateway: UInt16 = 5

    /// The address's bytes in network order: 4 for IPv4, 16 for IPv6.
    static func networkBytes(_ address: InternetAddress) -> [UInt8] {
        func bytes(_ v: UInt64, _ count: Int) -> [UInt8] {
            (0..<count).map { UInt8(truncatingIfNeeded: v >> UInt64(8 * (count - 1 - $0))) }
        }
        return address.isIPv6 ? bytes(address.high, 8) + bytes(address.low, 8) : bytes(address.low, 4)
    }

    static func address(_ value: ArraySlice<UInt8>, type: UInt16) throws -> InternetAddress {
        let bytes = Array(value)
        switch bytes.count {
        case 4:
            let word = bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            return InternetAddress(ipv4NetworkOrder: word.bigEndian)
        case 16:
            return InternetAddress(ipv6High: bytes[0..<8].reduce(0) { $0 << 8 | UInt64($1) },
                                   low: bytes[8..<16].reduce(0) { $0 << 8 | UInt64($1) })
        default:
            throw NetlinkInputError.badAttributeSize(type: type, length: bytes.count)
        }
    }

    static func attribute(_ type: UInt16, _ value: [UInt8]) -> [UInt8] {
        let length = 4 + value.count
        var bytes: [UInt8] = [UInt8(length & 0xFF), UInt8(length >> 8), UInt8(type & 0xFF), UInt8(type >> 8)] + value
        while bytes.count % 4 != 0 { bytes.append(0) }
        return bytes
    }

    /// The attributes after a message's fixed header, each length checked.
    static func attributes(_ p: ArraySlice<UInt8>) throws -> [(UInt16, ArraySlice<UInt8>)] {
        var found: [(UInt16, ArraySlice<UInt8>)] = []
        var offset = p.startIndex
        while p.endIndex - offset >= 4 {
            let length = Int(RTNetlink.read16(p, offset))
            let type = RTNetlink.read16(p, offset + 2) & 0x3FFF
            guard length >= 4, length <= p.endIndex - offset else {
                throw NetlinkInputError.truncatedAttribute(type: type, length: length)
            }
            found.append((type, p[(offset + 4)..<(offset + length)]))
            offset += RTNetlink.align(length)
        }
        return found
    }

    /// Sends one request and returns the kernel's answer to it (an NLMSG_ERROR is thrown as `kernelError`).
    private func ask(type: UInt16, body: [UInt8]) throws -> RTNetlink.Message {
        sequence &+= 1
        let number = sequence
        var request: [UInt8] = []
        func put16(_ v: UInt16) { request += [UInt8(v & 0xFF), UInt8(v >> 8)] }
        func put32(_ v: UInt32) { put16(UInt16(v & 0xFFFF)); put16(UInt16(v >> 16)) }
        put32(UInt32(RTNetlink.headerSize + body.count))
        put16(type)
        put16(RTNetlink.request)
        put32(number)
        put32(0)
        request += body
        let fd = socket.rawValue
        // SAFETY: the kernel reads request.count bytes of the array, alive through the call.
        _ = try syscall("send(netlink request)") { request.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) } }
        while true {
            // SAFETY: recv writes at most buffer.count bytes; MSG_TRUNC reports a longer datagram, refused below.
            let length = try syscall("recv(netlink answer)") { () -> Int in
                buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_TRUNC)) }
            }
            guard length <= buffer.count else {
                throw NetlinkInputError.badMessageLength(UInt32(truncatingIfNeeded: length), available: buffer.count)
            }
            for message in try RTNetlink.messages(in: buffer[0..<length]).get() where message.sequence == number {
                if message.type == RTNetlink.messageError {
                    let code = try RTNetlink.errorCode(message.payload).get()
                    throw NetlinkInputError.kernelError(code)
                }
                return message
            }
        }
    }
}
