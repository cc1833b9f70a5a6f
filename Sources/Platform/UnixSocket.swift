import CFerry
import Glibc
import Model

/// Stream unix sockets that carry file descriptors (SCM_RIGHTS), as vhost-user and the control socket need.
public enum UnixSocket {
    /// The most descriptors one message may carry (vhost-user sends at most 8 regions, or 32 mem slots).
    public static let maxDescriptors = 32

    private static func address(_ path: String) throws(InvalidArgument) -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw InvalidArgument("socket path too long: \(path) has \(bytes.count) bytes, at most "
                                  + "\(MemoryLayout.size(ofValue: addr.sun_path) - 1) (sun_path)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return addr
    }

    private static func makeSocket() throws(SystemError) -> FileDescriptor {
        FileDescriptor(owning: try syscall("socket(AF_UNIX)") {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        })
    }

    /// Listens on `path`, replacing a stale socket file left by an earlier run.
    /// With `permissions`, the file gets that owner, group and mode before anyone can
    /// connect: it is created 0600 (bind takes the mode of the socket's own inode,
    /// which fchmod sets — net/unix/af_unix.c, unix_bind — so no process-wide umask
    /// is touched while other threads run), then chowned, then given its mode.
    /// Throws `InvalidArgument` for a path too long for a socket address,
    /// `SystemError` for a failed call.
    public static func listen(path: String, permissions: SocketPermissions.Resolved? = nil,
                              backlog: Int32 = 8) throws -> FileDescriptor {
        var addr = try address(path)
        let fd = try makeSocket()
        unlink(path)
        let raw = fd.rawValue
        if permissions != nil { _ = try syscall("fchmod(socket, 0600)") { fchmod(raw, 0o600) } }
        _ = try syscall("bind(\(path))") {
            withUnsafePointer(to: &addr) {
                // SAFETY: sockaddr_un starts with sa_family like every sockaddr (the sockets API's
                // shared prefix); the kernel reads the sizeof(sockaddr_un) bytes of `addr` given as the
                // length.
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(raw, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
        }
        if let permissions {
            do throws(SystemError) {
                try apply(permissions, to: path)
            } catch {
                unlink(path)
                throw error
            }
        }
        _ = try syscall("listen(\(path))") { Glibc.listen(raw, backlog) }
        return fd
    }

    /// Owner and group first, while the file is still 0600, then the mode: at no
    /// step may anyone connect whom the final permissions would keep out. lchown:
    /// the path was just bound, it is a socket, not a link to follow.
    private static func apply(_ permissions: SocketPermissions.Resolved, to path: String) throws(SystemError) {
        if permissions.owner != nil || permissions.group != nil {
            let owner = permissions.owner ?? uid_t.max  // (uid_t)-1: leave unchanged
            let group = permissions.group ?? gid_t.max
            _ = try syscall("chown(\(path), \(permissions.owner.map(String.init) ?? "-"):\(permissions.group.map(String.init) ?? "-"))") {
                lchown(path, owner, group)
            }
        }
        _ = try syscall("chmod(\(path), \(SocketPermissions.octal(permissions.mode)))") { chmod(path, permissions.mode) }
    }

    /// Connects to `path`; the caller retries on ENOENT/ECONNREFUSED (a
    /// `SystemError`). A path too long for a socket address is an `InvalidArgument`.
    public static func connect(path: String) throws -> FileDescriptor {
        var addr = try address(path)
        let fd = try makeSocket()
        let raw = fd.rawValue
        _ = try syscall("connect(\(path))") {
            withUnsafePointer(to: &addr) {
                // SAFETY: sockaddr_un starts with sa_family like every sockaddr (the sockets API's
                // shared prefix); the kernel reads the sizeof(sockaddr_un) bytes of `addr` given as the
                // length.
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(raw, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
        }
        return fd
    }

    /// Accepts one connection, or nil when none is pending on a non-blocking listener.
    public static func accept(_ listener: Int32) throws(SystemError) -> FileDescriptor? {
        let result = try nonBlockingSyscall("accept") { ferry_accept_cloexec(listener) }
        switch result {
        case .done(let fd): return FileDescriptor(owning: fd)
        case .wouldBlock: return nil
        }
    }

    /// A connected pair, for tests and in-process peers; both ends are owned by the caller.
    public static func pair() throws(SystemError) -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        _ = try syscall("socketpair") {
            socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
        }
        return (fds[0], fds[1])
    }

    /// Sends all of `bytes`, with `fds` attached to the first byte. The
    /// descriptors stay the caller's: the kernel gives the peer new ones.
    public static func send(_ fd: Int32, bytes: [UInt8], fds: [Int32] = []) throws(SystemError) {
        precondition(fds.count <= maxDescriptors)
        var sent = 0
        repeat {
            sent += try sendOnce(fd, bytes: bytes, from: sent, fds: sent == 0 ? fds : [])
        } while sent < bytes.count
    }

    private static func sendOnce(_ fd: Int32, bytes: [UInt8], from offset: Int, fds: [Int32]) throws(SystemError) -> Int {
        let controlSize = fds.isEmpty ? 0 : ferry_cmsg_space(fds.count * 4)
        var control = [UInt8](repeating: 0, count: max(controlSize, 1))
        let sent: Result<Int, SystemError> = bytes.withUnsafeBytes { raw in
            control.withUnsafeMutableBytes { ctl in
                // SAFETY: offset <= bytes.count (send loops while sent < count), so base + offset and
                // the raw.count - offset bytes after it lie in `bytes`; the kernel only reads them
                // (sendmsg), never through the mutable pointer iovec's type asks for. The descriptors
                // go into the CMSG_DATA of a control buffer sized CMSG_SPACE(fds.count * 4), so
                // fds.count Int32s fit.
                var iov = iovec(iov_base: UnsafeMutableRawPointer(mutating: raw.baseAddress.map { $0 + offset }),
                                iov_len: raw.count - offset)
                return withUnsafeMutablePointer(to: &iov) { iovp in
                    var msg = msghdr()
                    msg.msg_iov = iovp
                    msg.msg_iovlen = 1
                    if controlSize > 0 {
                        msg.msg_control = ctl.baseAddress
                        msg.msg_controllen = controlSize
                        let cmsg = ferry_cmsg_firsthdr(&msg)!
                        cmsg.pointee.cmsg_level = SOL_SOCKET
                        cmsg.pointee.cmsg_type = Int32(SCM_RIGHTS)
                        cmsg.pointee.cmsg_len = ferry_cmsg_len(fds.count * 4)
                        let data = UnsafeMutableRawPointer(ferry_cmsg_data(cmsg)!)
                        for (i, f) in fds.enumerated() { data.storeBytes(of: f, toByteOffset: i * 4, as: Int32.self) }
                    }
                    do throws(SystemError) {
                        return .success(try syscall("sendmsg") { sendmsg(fd, &msg, Int32(MSG_NOSIGNAL)) })
                    } catch {
                        return .failure(error)
                    }
                }
            }
        }
        return try sent.get()
    }

    /// One received chunk: its length (0 at end of stream), the descriptors
    /// that rode on it, and whether the kernel dropped some (MSG_CTRUNC).
    public struct Received {
        public let count: Int
        public let fds: ReceivedDescriptors
        public let truncated: Bool
    }

    /// Receives up to `buffer.count` bytes and any descriptors riding on them,
    /// each owned as soon as it is seen; nil when nothing is pending (a
    /// non-blocking socket, or `nonBlocking`).
    public static func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, nonBlocking: Bool = false)
        throws(SystemError) -> Received?
    {
        let controlSize = ferry_cmsg_space(maxDescriptors * 4)
        var control = [UInt8](repeating: 0, count: controlSize)
        let flags = Int32(MSG_CMSG_CLOEXEC) | (nonBlocking ? Int32(MSG_DONTWAIT) : 0)
        let received: Result<Received?, SystemError> = control.withUnsafeMutableBytes { ctl in
            var iov = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
            return withUnsafeMutablePointer(to: &iov) { iovp in
                var msg = msghdr()
                msg.msg_iov = iovp
                msg.msg_iovlen = 1
                msg.msg_control = ctl.baseAddress
                msg.msg_controllen = controlSize
                let result: IOResult<Int>
                do throws(SystemError) {
                    result = try nonBlockingSyscall("recvmsg") { recvmsg(fd, &msg, flags) }
                } catch {
                    return .failure(error)
                }
                guard case .done(let n) = result else { return .success(nil) }
                let fds = ReceivedDescriptors()
                var cmsg = ferry_cmsg_firsthdr(&msg)
                while let c = cmsg {
                    if c.pointee.cmsg_level == SOL_SOCKET, c.pointee.cmsg_type == Int32(SCM_RIGHTS) {
                        let count = (Int(c.pointee.cmsg_len) - ferry_cmsg_len(0)) / 4
                        // SAFETY: the kernel wrote this control message inside msg_control
                        // (CMSG_FIRSTHDR/NXTHDR walk only within msg_controllen): its cmsg_len covers
                        // CMSG_LEN(0) + count * 4 bytes.
                        let data = UnsafeRawPointer(ferry_cmsg_data(c)!)
                        for i in 0..<count {
                            fds.append(FileDescriptor(owning: data.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)))
                        }
                    }
                    cmsg = ferry_cmsg_nxthdr(&msg, c)
                }
                return .success(Received(count: n, fds: fds, truncated: msg.msg_flags & Int32(MSG_CTRUNC) != 0))
            }
        }
        return try received.get()
    }
}
