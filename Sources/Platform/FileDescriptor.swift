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

    /// A new descriptor for the open file behind `rawValue`, which stays its
    /// owner's; closed on exec like every descriptor Ferry opens.
    public static func duplicating(_ rawValue: Int32) throws(SystemError) -> FileDescriptor {
        FileDescriptor(owning: try syscall("fcntl(F_DUPFD_CLOEXEC)") { fcntl(rawValue, F_DUPFD_CLOEXEC, 0) })
    }

    public func setNonBlocking() throws(SystemError) {
        let flags = try syscall("fcntl(F_GETFL)") { fcntl(rawValue, F_GETFL) }
        _ = try syscall("fcntl(F_SETFL)") { fcntl(rawValue, F_SETFL, flags | O_NONBLOCK) }
    }
}

/// Descriptors received together (SCM_RIGHTS), each owned from the moment
/// `recvmsg` returned it. Every one not taken is closed when the set goes away,
/// so an early return never leaks one.
public final class ReceivedDescriptors: @unchecked Sendable {
    private var slots: [DescriptorSlot] = []

    public init() {}

    /// Takes ownership of `rawValues`: descriptors a test or an in-process peer
    /// made for this set, which nobody else closes.
    public convenience init(owning rawValues: [Int32]) {
        self.init()
        for raw in rawValues { append(FileDescriptor(owning: raw)) }
    }

    /// How many descriptors the set was given, taken or not.
    public var count: Int { slots.count }

    /// Adds `fd` after the others.
    public func append(_ fd: consuming FileDescriptor) { slots.append(DescriptorSlot(fd)) }

    /// Takes ownership of descriptor `index`; nil when out of range or taken already.
    public func take(_ index: Int) -> FileDescriptor? {
        guard slots.indices.contains(index) else { return nil }
        return slots[index].take()
    }

    /// Moves every descriptor not taken yet, in order, into a new set; this one is left empty.
    public func takeAll() -> ReceivedDescriptors {
        let moved = ReceivedDescriptors()
        moved.slots = slots.filter { !$0.isEmpty }
        slots = []
        return moved
    }

    /// Moves every descriptor of `other` not taken yet to the end of this set.
    public func append(takingAllOf other: ReceivedDescriptors) {
        guard other !== self else { return }
        slots += other.takeAll().slots
    }

    /// Closes every descriptor not taken yet now, not whenever the set goes away.
    public func closeAll() {
        for slot in slots { slot.close() }
    }
}
