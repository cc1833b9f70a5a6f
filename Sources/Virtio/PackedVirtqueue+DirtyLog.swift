// Live migration on a packed ring (vhost-user.rst, "Migration"): while the
// front-end logs, the writes into the buffers mark their pages as they are
// made (`GuestWrites`, chosen once per burst), and the device's writes into the
// ring itself are marked here: the used descriptors written back over the
// descriptor ring (id, length, flags), once per published burst, and the
// device's event suppression structure. A packed ring has no used ring for
// log_guest_addr to place, so these are marked where they lie: the guest
// address of the bytes written, found through the memory table as a buffer's is.
extension PackedVirtqueue {
    /// Whether this queue's writes are logged now.
    public var isLogging: Bool { configuration.dirtyLog != nil }

    /// The dirty log a burst that writes into this queue's buffers marks
    /// (nil: logging off): the direct TAP path picks its `GuestWrites` by it.
    @inlinable
    public var dirtyPageLog: DirtyPageLog? { configuration.dirtyLog }

    /// Marks `count` descriptor slots from `position` (wrapping round the ring),
    /// where a burst's used descriptors were written.
    @usableFromInline
    func markUsedDescriptors(from position: UInt32, count: UInt32) {
        guard let log = configuration.dirtyLog, let mem = memory, let r = ring, count > 0 else { return }
        let writes = LoggedWrites(log: log, memory: mem)
        // No overflow: position < ringSize and count <= ringSize (a ring's worth at most is in flight).
        let run = min(count, ringSize &- position)
        writes.written(r + Int(position) &* PackedRingLayout.descriptorSize,
                       count: Int(run) &* PackedRingLayout.descriptorSize)
        if count > run { writes.written(r, count: Int(count &- run) &* PackedRingLayout.descriptorSize) }
    }

    /// Marks the device's event suppression structure after a write into it.
    @usableFromInline
    func markDeviceEvents() {
        guard let log = configuration.dirtyLog, let mem = memory, let device = deviceEvents else { return }
        LoggedWrites(log: log, memory: mem).written(device, count: 4)
    }
}
