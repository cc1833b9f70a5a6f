import CBPF
import Foundation
import Glibc
import Logging
import TestSupport
import XDP

/// What the XDP tests share: the check that they can run (root for bpf() and
/// netlink), veth pairs whose first end — in this namespace, where
/// `SteeringProgram` finds interfaces by name — carries the program, and a
/// look at the hook from outside Ferry's code (`ip link`, bpf_xdp_query).
enum XDPSandbox {
    static func requireSupport() throws {
        guard geteuid() == 0 else {
            throw NetworkSandbox.Unavailable("XDP tests need root (CAP_BPF, CAP_NET_ADMIN); run them as root")
        }
        guard FileManager.default.isExecutableFile(atPath: NetworkSandbox.ipPath) else {
            throw NetworkSandbox.Unavailable("XDP tests need iproute2 at \(NetworkSandbox.ipPath)")
        }
    }

    static let logger = Logger(label: "xdp-test")

    /// The programs on `interface`'s hook: (native, generic) ids, 0 for none.
    static func attachedIDs(_ interface: String) throws -> (native: UInt32, generic: UInt32) {
        var query = bpf_xdp_query_opts()
        query.sz = MemoryLayout<bpf_xdp_query_opts>.size
        let result = bpf_xdp_query(Int32(bitPattern: if_nametoindex(interface)), 0, &query)
        guard result == 0 else { throw NetworkSandbox.Unavailable("bpf_xdp_query(\(interface)): \(result)") }
        return (query.drv_prog_id, query.skb_prog_id)
    }

    /// A pid that belonged to a process and no longer does: a child that exited and was reaped.
    static func deadPID() throws -> Int32 {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run()
        child.waitUntilExit()
        return child.processIdentifier
    }

    /// Waits up to `seconds` for `condition` (veth delivers frames to XDP from NAPI, later than the send
    /// returns, and much later on a loaded machine); returns as soon as it holds.
    static func eventually(_ seconds: Double = 10, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }
}

/// A veth pair: `outer` stays in this namespace (the program goes there),
/// `inner` too or, with `peerNamespace`, in a namespace of its own. Deleting
/// one end deletes the pair, and with it any XDP program left attached.
final class VethPair {
    let outer: String
    let inner: String
    let namespace: NetworkSandbox.Namespace?

    init(_ tag: String, peerNamespace: Bool = false) throws {
        outer = NetworkSandbox.interfaceName("fxdp", "\(tag)o")
        inner = NetworkSandbox.interfaceName("fxdp", "\(tag)i")
        NetworkSandbox.removeInterface(outer)
        NetworkSandbox.removeInterface(inner)
        try NetworkSandbox.ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        // No router solicitations or MLD reports: the counters see only the test's frames.
        try NetworkSandbox.disableIPv6(outer)
        if peerNamespace {
            let namespace = try NetworkSandbox.Namespace("fxdp-\(getpid())-\(tag)")
            self.namespace = namespace
            try NetworkSandbox.ip("link", "set", inner, "netns", namespace.name)
            try namespace.ip("link", "set", inner, "up")
        } else {
            namespace = nil
            try NetworkSandbox.disableIPv6(inner)
            try NetworkSandbox.ip("link", "set", inner, "up")
        }
        try NetworkSandbox.ip("link", "set", outer, "up")
        // Until the kernel's link watcher has run, a device that just came up still has the noop
        // qdisc, which drops whatever a test sends; under load that takes longer than a send does.
        let ends = peerNamespace ? [outer] : [outer, inner]
        guard XDPSandbox.eventually(10, { ends.allSatisfy { (try? NetworkSandbox.sysfs($0, "operstate")) == "up" } }) else {
            throw NetworkSandbox.Unavailable("veth \(outer)/\(inner) did not come up within 10 s")
        }
    }

    deinit {
        NetworkSandbox.removeInterface(outer)
        namespace?.delete()
    }

    var outerIndex: UInt32 { if_nametoindex(outer) }
    var innerIndex: UInt32 { if_nametoindex(inner) }

    func outerMAC() throws -> String { try NetworkSandbox.sysfs(outer, "address") }
}
