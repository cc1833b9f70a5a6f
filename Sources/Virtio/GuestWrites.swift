/// How a burst that writes into guest memory says what it wrote: a ring
/// layout's writing code is generic over it and picks the type once per
/// burst, so with logging off the marks compile away (`UnloggedWrites`).
public protocol GuestWrites {
    /// `count` bytes at `host`, a pointer into one region of guest memory, were just written.
    func written(_ host: UnsafeMutableRawPointer, count: Int)
}

/// Logging off: nothing to mark.
public struct UnloggedWrites: GuestWrites {
    @inlinable public init() {}
    @inlinable public func written(_ host: UnsafeMutableRawPointer, count: Int) {}
}

/// Logging on: each write marks its pages by guest-physical address.
public struct LoggedWrites: GuestWrites {
    @usableFromInline unowned(unsafe) let log: DirtyPageLog
    @usableFromInline unowned(unsafe) let memory: GuestMemory

    /// The caller keeps `log` and `memory` alive for the burst (the ring holds both).
    @inlinable
    public init(log: DirtyPageLog, memory: GuestMemory) {
        self.log = log
        self.memory = memory
    }

    @inlinable
    public func written(_ host: UnsafeMutableRawPointer, count: Int) {
        guard let address = memory.guestAddress(ofHost: host) else { return }
        log.mark(address, length: count)
    }
}
