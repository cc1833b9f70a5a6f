import Glibc

/// An owned file descriptor: closed exactly once, when its owner goes away.
/// `close` is never retried (on Linux the descriptor is gone even on EINTR).
public struct FileDescriptor: ~Copyable, Sendable {
    public let rawValue: Int32

    public init(owning rawValue: Int32) {
        precondition(rawValue >= 0, "owning a negative descriptor")
        self.rawValue = rawValue
    }

    /// Gives the descriptor up without closing it.
    public consuming func release() -> Int32 {
        let fd = rawValue
        discard self
        return fd
    }

    deinit { _ = Glibc.close(rawValue) }

    public func setNonBlocking() throws(SystemError) {
        let flags = try syscall("fcntl(F_GETFL)") { fcntl(rawValue, F_GETFL) }
        _ = try syscall("fcntl(F_SETFL)") { fcntl(rawValue, F_SETFL, flags | O_NONBLOCK) }
    }
}

/// Descriptors received together (SCM_RIGHTS). Every one not taken is closed
/// when the set goes away, so an early return never leaks one.
public final class ReceivedDescriptors: @unchecked Sendable {
    private var fds: [Int32]

    public init(_ fds: [Int32] = []) { self.fds = fds }
    deinit { for fd in fds where fd >= 0 { _ = Glibc.close(fd) } }

    public var count: Int { fds.count }

    /// Takes ownership of descriptor `index`; nil when out of range or taken already.
    public func take(_ index: Int) -> FileDescriptor? {
        guard index >= 0, index < fds.count, fds[index] >= 0 else { return nil }
        let fd = fds[index]
        fds[index] = -1
        return FileDescriptor(owning: fd)
    }

    /// Takes every remaining descriptor in order.
    public func takeAll() -> [Int32] {
        let all = fds.filter { $0 >= 0 }
        fds = fds.map { _ in -1 }
        return all
    }
}
