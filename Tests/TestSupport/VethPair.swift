import Foundation
import Glibc
import Platform

/// A veth pair for tests of ports on existing interfaces: `name` in this
/// process's namespace for the port, `peer` in a namespace of its own for
/// the far side, both up, without IPv6 so the kernel sends nothing on them by
/// itself. Deleting the namespace deletes the pair, also when a test fails.
public final class VethPair {
    public static let sysctlPath = "/usr/sbin/sysctl"
    public let name: String
    public let peer = "peer0"
    public let namespace: NetworkSandbox.Namespace

    /// `suffix`: at most 5 characters, unique within the test process.
    public init(_ suffix: String, mtu: Int? = nil) throws {
        name = NetworkSandbox.interfaceName("ferrypk", suffix)
        NetworkSandbox.removeInterface(name)
        namespace = try NetworkSandbox.Namespace("ferry-pk-\(getpid())-\(suffix)")
        try NetworkSandbox.ip("link", "add", name, "type", "veth", "peer", "name", peer, "netns", namespace.name)
        try NetworkSandbox.disableIPv6(name)
        try namespace.exec(Self.sysctlPath, "-qw", "net.ipv6.conf.\(peer).disable_ipv6=1")
        if let mtu {
            try NetworkSandbox.ip("link", "set", name, "mtu", "\(mtu)")
            try namespace.ip("link", "set", peer, "mtu", "\(mtu)")
        }
        try NetworkSandbox.ip("link", "set", name, "up")
        try namespace.ip("link", "set", peer, "up")
    }

    deinit { remove() }

    /// Deletes the pair (with the namespace).
    public func remove() {
        namespace.delete()
        NetworkSandbox.removeInterface(name)
    }

    /// A packet socket on the peer: what it sends arrives on `name`, what is
    /// sent on `name` it receives.
    public func peerSocket() throws -> PacketSocket {
        try namespace.enter { try PacketSocket(interface: if_nametoindex(peer), ignoreOutgoing: true) }
    }

    /// The MAC address of `name`.
    public var address: [UInt8] {
        get throws {
            try NetworkSandbox.sysfs(name, "address").split(separator: ":").map { UInt8($0, radix: 16)! }
        }
    }
}
