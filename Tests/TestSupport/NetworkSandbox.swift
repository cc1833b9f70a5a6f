import CFerry
import Foundation
import Glibc
import Platform

/// What tests on real interfaces share: the check that they can run at all
/// (they fail with the reason when they cannot), names unique to the run,
/// iproute2 and tc, and network namespaces that take whatever was built in
/// them along when they go.
public enum NetworkSandbox {
    public struct Unavailable: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    public static let ipPath = "/usr/sbin/ip"
    public static let tcPath = "/usr/sbin/tc"
    public static let bridgePath = "/usr/sbin/bridge"

    /// Throws, saying why, unless this process may create TAPs and namespaces.
    public static func requireTapSupport() throws {
        guard geteuid() == 0 else {
            throw Unavailable("TAP tests need root (CAP_NET_ADMIN); run them as root")
        }
        guard access("/dev/net/tun", R_OK | W_OK) == 0 else {
            throw Unavailable("TAP tests need /dev/net/tun (modprobe tun): \(String(cString: strerror(errno)))")
        }
        guard FileManager.default.isExecutableFile(atPath: ipPath) else {
            throw Unavailable("TAP tests need iproute2 at \(ipPath)")
        }
    }

    /// An interface name unique to this process: `prefix`, three digits of the
    /// pid, `suffix`; at most 15 bytes (IFNAMSIZ), which the caller's lengths must respect.
    public static func interfaceName(_ prefix: String, _ suffix: String) -> String {
        let name = "\(prefix)\(getpid() % 1000)\(suffix)"
        precondition(name.utf8.count <= 15, "interface name \(name) longer than IFNAMSIZ allows")
        return name
    }

    /// Runs `tool` with `arguments`, throwing its stderr when it fails.
    @discardableResult
    public static func run(_ tool: String, _ arguments: [String]) throws -> String {
        guard FileManager.default.isExecutableFile(atPath: tool) else {
            throw Unavailable("this test needs \(tool)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Unavailable("\(tool) \(arguments.joined(separator: " ")): "
                              + (String(data: errors, encoding: .utf8) ?? "status \(process.terminationStatus)"))
        }
        return String(data: output, encoding: .utf8) ?? ""
    }

    @discardableResult
    public static func ip(_ arguments: String...) throws -> String { try run(ipPath, arguments) }

    /// Deletes interface `name` if it exists (an earlier, interrupted run may have left it).
    public static func removeInterface(_ name: String) {
        if if_nametoindex(name) != 0 { _ = try? run(ipPath, ["link", "del", name]) }
    }

    /// A file of /sys/class/net/NAME, trimmed.
    public static func sysfs(_ name: String, _ attribute: String) throws -> String {
        try String(contentsOfFile: "/sys/class/net/\(name)/\(attribute)", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Reads and drops whatever `device` holds on every queue: what the
    /// kernel sent while the link came up, which a test does not count.
    public static func drain(_ device: TapDevice) throws {
        var scratch = [UInt8](repeating: 0, count: 65_536)
        for q in 0..<device.queueCount {
            while true {
                let result = try scratch.withUnsafeMutableBytes { raw in
                    var iov = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
                    return try device.readv(queue: q, &iov, count: 1)
                }
                if case .wouldBlock = result { break }
            }
        }
    }

    /// Turns IPv6 off on `name`, so the kernel stops sending router
    /// solicitations and MLD reports on a link a test wants to itself.
    public static func disableIPv6(_ name: String) throws {
        let path = "/proc/sys/net/ipv6/conf/\(name)/disable_ipv6"
        guard FileManager.default.fileExists(atPath: path) else { return }
        try "1".write(toFile: path, atomically: false, encoding: .utf8)
    }

    /// A network namespace of the test's own. Deleting it deletes every
    /// virtual interface in it, a TAP moved there included.
    public final class Namespace {
        public let name: String
        private var deleted = false

        public init(_ name: String) throws {
            self.name = name
            _ = try? NetworkSandbox.ip("netns", "del", name)
            try NetworkSandbox.ip("netns", "add", name)
        }

        deinit { delete() }

        public func delete() {
            guard !deleted else { return }
            deleted = true
            _ = try? NetworkSandbox.ip("netns", "del", name)
        }

        /// Runs `body` on this thread inside the namespace, then moves the
        /// thread back: sockets opened in `body` stay in the namespace.
        public func enter<T>(_ body: () throws -> T) throws -> T {
            let original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
            guard original >= 0 else { throw Unavailable("open /proc/thread-self/ns/net: \(String(cString: strerror(errno)))") }
            defer { close(original) }
            let target = open("/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
            guard target >= 0 else { throw Unavailable("open /run/netns/\(name): \(String(cString: strerror(errno)))") }
            defer { close(target) }
            guard ferry_setns(target, FERRY_CLONE_NEWNET) == 0 else {
                throw Unavailable("setns(\(name)): \(String(cString: strerror(errno)))")
            }
            defer { precondition(ferry_setns(original, FERRY_CLONE_NEWNET) == 0, "cannot leave namespace \(name)") }
            return try body()
        }

        /// Runs `ip` inside the namespace.
        @discardableResult
        public func ip(_ arguments: String...) throws -> String {
            try NetworkSandbox.run(NetworkSandbox.ipPath, ["-n", name] + arguments)
        }

        /// Runs `tool` (tc, bridge) inside the namespace.
        @discardableResult
        public func exec(_ tool: String, _ arguments: String...) throws -> String {
            guard FileManager.default.isExecutableFile(atPath: tool) else {
                throw Unavailable("this test needs \(tool)")
            }
            return try NetworkSandbox.run(NetworkSandbox.ipPath, ["netns", "exec", name, tool] + arguments)
        }
    }
}
