import Glibc
import Model

// A tunnel endpoint as the kernel's socket calls take and give it: a sockaddr_in or
// sockaddr_in6 in memory the caller owns (a received datagram's name, an entry of
// `TunnelEndpoints`, a bind address on the stack).
extension InternetAddress {
    /// The source address of a received packet, from the sockaddr the kernel
    /// wrote at `p`; nil for another family.
    @inlinable
    public init?(socketAddress p: UnsafeRawPointer) {
        // SAFETY: `p` points at a sockaddr of at least sockaddr_in6's size (the caller's
        // name buffer); the family is read first and only its own fields after it.
        switch Int32(p.load(as: sa_family_t.self)) {
        case AF_INET:
            self.init(ipv4NetworkOrder: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        case AF_INET6:
            self.init(ipv6High: UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                      low: UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self)))
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
        // SAFETY: the caller gives room for a sockaddr_in6, the larger of the two.
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
}
