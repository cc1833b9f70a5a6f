import Glibc

/// Blocking reads and writes between a descriptor and a Swift byte array, for the
/// callers that hold no raw memory of their own (`ferry ctl`, its capture stream,
/// the terminal of `ctl top`, the log): the pointer into the array lives here only.
public enum DescriptorIO {
    /// read(2) into `buffer`, up to its count: the bytes read, 0 at the end, or -1 with
    /// `errno` set (EINTR included: the caller decides whether to go on).
    public static func read(_ fd: Int32, into buffer: inout [UInt8]) -> Int {
        buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
    }

    /// write(2) of `bytes`: the bytes written, or -1 with `errno` set.
    public static func write(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Int {
        bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    }

    /// Writes all of `bytes`, EINTR retried; false when the descriptor stopped taking them.
    @discardableResult
    public static func writeAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Bool {
        var rest = bytes
        while !rest.isEmpty {
            let n = write(fd, rest)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            rest = rest.dropFirst(n)
        }
        return true
    }
}
