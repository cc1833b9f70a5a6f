import Model

/// The key of `ferry_tunnels` (struct ferry_tunnel_key in bpf/ferry_steer.bpf.c):
/// a tunnel's local address (IPv4 in the first 4 bytes, the rest zero), its UDP
/// port in network order, the family (4 or 6) and a pad byte, 20 bytes. Built
/// byte by byte so Swift's layout never matters.
struct TunnelKey {
    var bytes: [UInt8]

    init(address: InternetAddress, port: UInt16) {
        func bigEndian(_ v: UInt64, _ count: Int) -> [UInt8] {
            (0..<count).map { UInt8(truncatingIfNeeded: v >> UInt64(8 * (count - 1 - $0))) }
        }
        var address16 = address.isIPv6 ? bigEndian(address.high, 8) + bigEndian(address.low, 8)
            : bigEndian(address.low, 4)
        address16 += [UInt8](repeating: 0, count: 16 - address16.count)
        bytes = address16 + [UInt8(port >> 8), UInt8(port & 0xFF), address.isIPv6 ? 6 : 4, 0]
    }
}
