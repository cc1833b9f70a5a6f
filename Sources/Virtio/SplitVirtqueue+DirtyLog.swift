// Live migration (vhost-user.rst, "Migration"): while the front-end logs, the
// writes into the buffers mark their pages as they are made (`GuestWrites`,
// chosen once per burst), and the used ring's are marked here, once per
// published burst, at the addresses the front-end gave for it (log_guest_addr,
// which need not be a guest address at all: it is where the front-end wants
// the ring's pages logged).
extension SplitVirtqueue {
    /// The used ring's size in bytes at the largest ring size: a log address
    /// must leave room for it (SET_VRING_ADDR may precede SET_VRING_NUM).
    public static let largestUsedRingBytes = SplitRingLayout.usedBytes(Int(SplitRingLayout.maxSize))

    /// The used ring's bytes at the current size, for checking that the log covers them.
    public var usedRingBytes: UInt64 {
        let size = configuration.size
        return SplitRingLayout.usedBytes(Int(size == 0 ? UInt16(SplitRingLayout.maxSize) : size))
    }

    /// Whether writes into this queue's buffers are logged now.
    public var isLogging: Bool { configuration.dirtyLog != nil }

    /// The dirty log a burst that writes into this queue's buffers marks
    /// (nil: logging off): the direct TAP path picks its `GuestWrites` by it.
    @inlinable
    public var dirtyPageLog: DirtyPageLog? { configuration.dirtyLog }

    /// Marks `length` bytes of the used ring at `offset` from its start, if logged.
    @inlinable
    func markUsedRing(offset: Int, length: Int) {
        guard let log = configuration.dirtyLog, let base = configuration.usedRingLogAddress else { return }
        // No overflow: the address was checked to leave room for the largest used ring.
        log.mark(GuestAddress(base &+ UInt64(offset)), length: length)
    }

    /// Marks `count` used entries from index `first` (wrapping round the ring) and the used index.
    @usableFromInline
    func markPublished(from first: UInt16, count: UInt16) {
        guard let log = configuration.dirtyLog, let base = configuration.usedRingLogAddress else { return }
        let ringSize = Int(mask) &+ 1
        var slot = Int(first & mask)
        var left = Int(count)
        while left > 0 {
            let run = min(left, ringSize &- slot)
            log.mark(GuestAddress(base &+ UInt64(4 &+ 8 &* slot)), length: 8 &* run)
            left &-= run
            slot = 0
        }
        log.mark(GuestAddress(base &+ 2), length: 2)
    }
}
