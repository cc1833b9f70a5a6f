/// How a burst that writes into guest memory says what it wrote: a ring
/// layout's writing code is generic over it and picks the type once per
/// burst (`GuestWritingBurst.run`), so with logging off the marks compile
/// away (`UnloggedWrites`).
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

/// A burst that writes into guest memory, its body written once, generic over
/// `GuestWrites`. `run(log:memory:)` is the one place where the writes are
/// chosen: every path that writes into a guest (split and packed push, the
/// direct TAP read) goes through it while its ring has a log, so none can
/// forget the dirty log (a push into a ring without one skips straight to
/// `UnloggedWrites`: `GuestReceiveQueue.pushChoosingWrites`).
public protocol GuestWritingBurst {
    associatedtype Outcome
    mutating func write<W: GuestWrites>(with writes: W) -> Outcome
}

extension GuestWritingBurst {
    /// Runs the burst with `LoggedWrites` while `log` (the ring's dirty log,
    /// nil with logging off) is on and the ring has memory, else with `UnloggedWrites`.
    @inlinable
    public mutating func run(log: DirtyPageLog?, memory: GuestMemory?) -> Outcome {
        if let log, let memory { return write(with: LoggedWrites(log: log, memory: memory)) }
        return write(with: UnloggedWrites())
    }
}
