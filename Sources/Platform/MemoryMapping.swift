import CFerry
import Glibc

/// An owned mmap'd range, unmapped when its owner goes away.
public final class MemoryMapping: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let length: Int

    /// Maps `length` bytes of `fd` from file offset 0, shared and read-write.
    public init(fd: Int32, length: Int, offset: Int = 0) throws(SystemError) {
        let p = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(offset))
        guard let p, p != MAP_FAILED else { throw SystemError("mmap", errno: errno) }
        self.base = p
        self.length = length
    }

    deinit { munmap(base, length) }
}

/// Memory backed by a new memfd that other processes can map too: a packet
/// pool, or a test guest's RAM handed to a back-end over SCM_RIGHTS.
public final class SharedMemory: @unchecked Sendable {
    public let fd: FileDescriptor
    public let mapping: MemoryMapping
    public var base: UnsafeMutableRawPointer { mapping.base }
    public var length: Int { mapping.length }

    public init(length: Int, name: String) throws(SystemError) {
        let fd = FileDescriptor(owning: try syscall("memfd_create") { ferry_memfd_create(name, FERRY_MFD_CLOEXEC) })
        _ = try syscall("ftruncate") { ftruncate(fd.rawValue, off_t(length)) }
        self.mapping = try MemoryMapping(fd: fd.rawValue, length: length)
        self.fd = fd
    }
}
