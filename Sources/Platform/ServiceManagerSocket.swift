import CFerry
import Glibc

/// The service manager's notification socket (sd_notify(3)'s protocol, written here
/// rather than linking libsystemd): when systemd starts a `Type=notify` unit it puts a
/// unix datagram socket's address in $NOTIFY_SOCKET, and each datagram sent there is
/// newline-separated `KEY=VALUE` assignments — READY=1, STOPPING=1, WATCHDOG=1,
/// STATUS=text. A path starting with '@' is in the abstract namespace (its first byte
/// NUL on the wire). Without $NOTIFY_SOCKET (not under systemd) nothing is sent.
public struct ServiceManagerSocket: Sendable {
    /// The address, its length as connect/sendto take it.
    private let address: sockaddr_un
    private let length: socklen_t
    public let path: String

    /// From $NOTIFY_SOCKET; nil when it is unset, empty, or not a unix socket path
    /// (systemd may also name an AF_VSOCK address for a VM, which Ferry does not serve).
    public init?(environment value: String? = getenv("NOTIFY_SOCKET").map { String(cString: $0) }) {
        guard let value, let first = value.first, first == "/" || first == "@" else { return nil }
        var bytes = Array(value.utf8)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return nil }
        if first == "@" { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
        // An abstract address is exactly its bytes; a path may carry its NUL, which the
        // zeroed sun_path supplies.
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!
        address = addr
        length = socklen_t(pathOffset + bytes.count + (first == "@" ? 0 : 1))
        path = value
    }

    /// Sends `assignments` ("READY=1", "STATUS=...") in one datagram. A failure is
    /// returned, not fatal: the switch runs on, and systemd notices a missing READY or
    /// WATCHDOG by itself.
    public func send(_ assignments: [String]) throws(SystemError) {
        let fd = FileDescriptor(owning: try syscall("socket(AF_UNIX, SOCK_DGRAM)") {
            socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        })
        let message = Array(assignments.joined(separator: "\n").utf8)
        var addr = address
        let length = self.length
        _ = try syscall("sendto(\(path))") {
            withUnsafePointer(to: &addr) { pointer in
                // SAFETY: `addr` is a sockaddr_un, which starts with its family like every sockaddr;
                // the kernel reads `length` bytes of it, at most its size: init refused a path not
                // shorter than sun_path.
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    message.withUnsafeBytes { sendto(fd.rawValue, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, length) }
                }
            }
        }
    }
}
