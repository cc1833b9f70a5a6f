import CFerry
import Glibc

/// Bytes in and out of a connected stream socket that must never block the
/// control thread (control clients, metrics scrapers, capture streams),
/// through the syscall helper: EINTR retried, a full or empty socket
/// `.wouldBlock`, anything else (the peer reset the connection) a `SystemError`.
public enum StreamSocket {
    /// What is there, up to `buffer.count` bytes; `.done(0)` at the end of the stream.
    public static func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOResult<Int> {
        try nonBlockingSyscall("recv") { recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT)) }
    }

    /// As much of `bytes` as the socket takes now; a peer that is gone is an
    /// error (EPIPE), never a SIGPIPE.
    public static func send(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(SystemError) -> IOResult<Int> {
        try nonBlockingSyscall("send") {
            Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
        }
    }

    /// `receive` into the first `buffer.count` bytes of an array the caller keeps.
    public static func receive(_ fd: Int32, into buffer: inout [UInt8]) throws(SystemError) -> IOResult<Int> {
        let result = buffer.withUnsafeMutableBytes { raw in Result { () throws(SystemError) in try receive(fd, into: raw) } }
        return try result.get()
    }

    /// `send` of an array's bytes.
    public static func send(_ fd: Int32, _ bytes: [UInt8]) throws(SystemError) -> IOResult<Int> {
        let result = bytes.withUnsafeBytes { raw in Result { () throws(SystemError) in try send(fd, raw) } }
        return try result.get()
    }
}
