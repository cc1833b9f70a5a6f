import CFerry
import Glibc

/// Thin helpers for eventfd counters, which vhost-user uses for kicks and calls.
public enum EventFD {
    public static func create(nonBlocking: Bool = true) throws(SystemError) -> FileDescriptor {
        let flags = Int32(EFD_CLOEXEC) | (nonBlocking ? Int32(EFD_NONBLOCK) : 0)
        return FileDescriptor(owning: try syscall("eventfd") { eventfd(0, flags) })
    }

    /// Adds one to the counter. A full counter (EAGAIN) already means "signalled".
    @inlinable
    public static func signal(_ fd: Int32) {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { Glibc.write(fd, $0.baseAddress, 8) }
    }

    /// Reads and clears the counter; 0 when it was not signalled.
    @inlinable
    public static func drain(_ fd: Int32) -> UInt64 {
        var value: UInt64 = 0
        let n = withUnsafeMutableBytes(of: &value) { Glibc.read(fd, $0.baseAddress, 8) }
        return n == 8 ? value : 0
    }
}
