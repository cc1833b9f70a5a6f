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

    @inlinable
    public init(ipv4NetworkOrder address: in_addr_t) {
        isIPv6 = false
        high = 0
        low = UInt64(UInt32(bigEndian: address))
    }

    /// An IPv6 address from its two big-endian halves, as `high` and `low` hold them.
    @inlinable
    public init(ipv6High high: UInt64, low: UInt64) {
        isIPv6 = true
        self.high = high
        self.low = low
    }

    public init(ipv6 address: in6_addr) {
        let words = address.__in6_u.__u6_addr32
        self.init(ipv6High: UInt64(UInt32(bigEndian: words.0)) << 32 | UInt64(UInt32(bigEndian: words.1)),
                  low: UInt64(UInt32(bigEndian: words.2)) << 32 | UInt64(UInt32(bigEndian: words.3)))
    }

    public var description: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        if isIPv6 {
            func word(_ half: UInt64, _ shift: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: half >> shift).bigEndian }
            var address = in6_addr(__in6_u: .init(__u6_addr32: (word(high, 32), word(high, 0), word(low, 32), word(low, 0))))
            inet_ntop(AF_INET6, &address, &text, socklen_t(text.count))
        } else {
            var address = in_addr(s_addr: UInt32(truncatingIfNeeded: low).bigEndian)
            inet_ntop(AF_INET, &address, &text, socklen_t(text.count))
        }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
