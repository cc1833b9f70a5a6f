import Glibc

/// An IPv4 or IPv6 address without a port: a tunnel's local or remote
/// endpoint. Held as 16 bytes (IPv4 in the low 4, the rest zero) plus the
/// family, so a received packet's source compares with two loads.
public struct InternetAddress: Hashable, Sendable, CustomStringConvertible {
    public let isIPv6: Bool
    /// The address bytes in network order, big-endian halves: for IPv4, `low` holds the 4 bytes.
    public let high: UInt64
    public let low: UInt64

    /// nil when `text` is neither a dotted IPv4 address nor an IPv6 address.
    public init?(_ text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self.init(ipv4NetworkOrder: v4.s_addr)
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        self.init(ipv6: v6)
    }

    public init(ipv4NetworkOrder address: in_addr_t) {
        isIPv6 = false
        high = 0
        low = UInt64(UInt32(bigEndian: address))
    }

    public init(ipv6 address: in6_addr) {
        isIPv6 = true
        (high, low) = withUnsafeBytes(of: address) {
            (UInt64(bigEndian: $0.loadUnaligned(as: UInt64.self)),
             UInt64(bigEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
        }
    }

    /// The source address of a received packet, from the sockaddr the kernel
    /// wrote at `p`; nil for another family.
    @inlinable
    public init?(socketAddress p: UnsafeRawPointer) {
        switch Int32(p.load(as: sa_family_t.self)) {
        case AF_INET:
            isIPv6 = false
            high = 0
            low = UInt64(UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
        case AF_INET6:
            isIPv6 = true
            high = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            low = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        default:
            return nil
        }
    }

    /// Bytes of the sockaddr for the family: sockaddr_in or sockaddr_in6.
    public var socketAddressLength: Int {
        isIPv6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size
    }

    /// Writes the sockaddr for this address and `port` at `p` (room for a sockaddr_in6).
    public func writeSocketAddress(port: UInt16, to p: UnsafeMutableRawPointer) {
        p.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<sockaddr_in6>.size)
        if isIPv6 {
            p.storeBytes(of: sa_family_t(AF_INET6), as: sa_family_t.self)
            p.storeBytes(of: port.bigEndian, toByteOffset: 2, as: UInt16.self)
            p.storeBytes(of: high.bigEndian, toByteOffset: 8, as: UInt64.self)
            p.storeBytes(of: low.bigEndian, toByteOffset: 16, as: UInt64.self)
        } else {
            p.storeBytes(of: sa_family_t(AF_INET), as: sa_family_t.self)
            p.storeBytes(of: port.bigEndian, toByteOffset: 2, as: UInt16.self)
            p.storeBytes(of: UInt32(truncatingIfNeeded: low).bigEndian, toByteOffset: 4, as: UInt32.self)
        }
    }

    public var description: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        if isIPv6 {
            var address = in6_addr()
            withUnsafeMutableBytes(of: &address) {
                $0.storeBytes(of: high.bigEndian, as: UInt64.self)
                $0.storeBytes(of: low.bigEndian, toByteOffset: 8, as: UInt64.self)
            }
            inet_ntop(AF_INET6, &address, &text, socklen_t(text.count))
        } else {
            var address = in_addr(s_addr: UInt32(truncatingIfNeeded: low).bigEndian)
            inet_ntop(AF_INET, &address, &text, socklen_t(text.count))
        }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
