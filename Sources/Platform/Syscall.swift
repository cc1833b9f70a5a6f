import Glibc

/// The outcome of a non-blocking call: done, or would have blocked.
public enum IOResult<T> {
    case done(T)
    case wouldBlock
}

/// Every system call goes through here: EINTR is retried, EBADF and EFAULT
/// are our own bugs and trap, anything else becomes a `SystemError` naming the call.
@inlinable
public func syscall<T: FixedWidthInteger>(_ name: @autoclosure () -> String, _ body: () -> T) throws(SystemError) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = errno
        switch code {
        case EINTR: continue
        case EBADF, EFAULT: preconditionFailure("\(name()) returned \(code): a bug in Ferry")
        default: throw SystemError(name(), errno: code)
        }
    }
}

/// As `syscall`, with EAGAIN/EWOULDBLOCK reported as a value rather than an error.
/// `touchesGuestMemory`: the call copies to or from a guest's buffers, which
/// a front-end can take away (truncating the file behind them): EFAULT is then
/// its doing, not ours, and an error like any other.
@inlinable
public func nonBlockingSyscall<T: FixedWidthInteger>(_ name: @autoclosure () -> String, touchesGuestMemory: Bool = false,
                                                     _ body: () -> T) throws(SystemError) -> IOResult<T> {
    while true {
        let result = body()
        if result != -1 { return .done(result) }
        let code = errno
        switch code {
        case EINTR: continue
        case EAGAIN: return .wouldBlock
        case EFAULT where touchesGuestMemory: throw SystemError(name(), errno: code)
        case EBADF, EFAULT: preconditionFailure("\(name()) returned \(code): a bug in Ferry")
        default: throw SystemError(name(), errno: code)
        }
    }
}
