import CFerry
import Glibc

/// eventfd counters, which vhost-user uses for kicks and calls.
///
/// Kick and call descriptors belong to the front-end as much as to Ferry: the
/// open file description, and so O_NONBLOCK, is shared with it. Reads
/// therefore ask for non-blocking behaviour per call (RWF_NOWAIT; eventfd
/// honours it since Linux 5.12), which never sleeps whatever the file's flags
/// say and leaves them as the front-end set them. Writes have no such per-call
/// flag on an eventfd (pwritev2 answers EOPNOTSUPP), so a call descriptor is
/// made non-blocking when Ferry adopts it (`VhostDevice`).
public enum EventFD {
    public static func create(nonBlocking: Bool = true) throws(SystemError) -> FileDescriptor {
        let flags = Int32(EFD_CLOEXEC) | (nonBlocking ? Int32(EFD_NONBLOCK) : 0)
        return FileDescriptor(owning: try syscall("eventfd") { eventfd(0, flags) })
    }

    /// Adds one to the counter. A full counter (EAGAIN) already means "signalled".
    @inlinable
    public static func signal(_ fd: Int32) {
        var one: UInt64 = 1
        _ = try? nonBlockingSyscall("write(eventfd)") {
            withUnsafeBytes(of: &one) { Glibc.write(fd, $0.baseAddress, 8) }
        }
    }

    /// Reads and clears the counter; 0 when it was not signalled. Never blocks,
    /// even on an eventfd made without EFD_NONBLOCK; on a descriptor that cannot
    /// read without blocking (not an eventfd) it reads nothing and returns 0.
    @inlinable
    public static func drain(_ fd: Int32) -> UInt64 {
        var value: UInt64 = 0
        let result = try? withUnsafeMutableBytes(of: &value) { bytes throws(SystemError) in
            var piece = iovec(iov_base: bytes.baseAddress, iov_len: 8)
            // Offset -1: the file position, which an eventfd does not have (preadv2(2)).
            return try nonBlockingSyscall("preadv2(eventfd, RWF_NOWAIT)") {
                ferry_preadv2(fd, &piece, 1, -1, Int32(FERRY_RWF_NOWAIT))
            }
        }
        if case .done(8)? = result { return value }
        return 0
    }
}
