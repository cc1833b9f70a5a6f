import Glibc

/// What a descriptor someone else handed over for Ferry to map is, and how
/// long: a front-end's guest memory or dirty log must be a regular file, at
/// least as long as what will be mapped of it (past its end an access raises SIGBUS).
public struct FileStatus: Sendable {
    public let kind: DescriptorKind
    /// The file's length in bytes.
    public let size: UInt64
    /// The unit it maps in: hugetlbfs and memfd report their page size here.
    public let blockSize: UInt64

    public static func of(_ fd: Int32) throws(SystemError) -> FileStatus {
        let kind = try DescriptorKind.of(fd)
        var st = stat()
        _ = try syscall("fstat") { fstat(fd, &st) }
        return FileStatus(kind: kind, size: UInt64(max(st.st_size, 0)), blockSize: UInt64(max(st.st_blksize, 0)))
    }
}
