import CFerry
import Glibc

/// An owned mmap'd range, unmapped when its owner goes away.
public final class MemoryMapping: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let length: Int
    /// Set for a mapping of a file another process may truncate (`BusErrorRecovery`).
    private let watch: BusErrorRecovery.Watch?

    /// Maps `length` bytes of `fd` from file offset 0, shared and read-write.
    /// `survivingTruncation`: the file is someone else's and may shrink; an
    /// access past its new end then reads zeros and sets `hasFaulted` instead
    /// of killing the process.
    public init(fd: Int32, length: Int, offset: Int = 0, survivingTruncation: Bool = false) throws(SystemError) {
        let p = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(offset))
        guard let p, p != MAP_FAILED else { throw SystemError("mmap", errno: errno) }
        self.base = p
        self.length = length
        self.watch = survivingTruncation ? BusErrorRecovery.watch(p, length: length) : nil
    }

    /// True once an access raised SIGBUS (the file shrank): the range now holds zeros.
    public var hasFaulted: Bool { watch.map(BusErrorRecovery.hasFaulted) ?? false }

    deinit {
        // Unwatched first: once unmapped, the range may become someone else's mapping.
        if let watch { BusErrorRecovery.unwatch(watch) }
        munmap(base, length)
    }
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
