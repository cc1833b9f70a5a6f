import CFerry
import Packets

extension PackedVirtqueue {
    /// Takes up to `batch.room` chains from a device-readable (TX) ring into
    /// `batch` without copying frame bytes, as `SplitVirtqueue.pull` does. The
    /// chains are marked used only by `release`, so the guest cannot reuse the
    /// buffers while the frames are in flight. Returns how many chains were
    /// taken (frames plus drops); drops are counted into `counters`.
    @inlinable
    public func pull(into batch: PacketBatch, counters: QueueCounters) -> Int {
        guard isRunning, let mem = memory else { return 0 }
        let room = batch.room
        var consumed = 0
        var bytes: UInt64 = 0
        let startCount = batch.count
        defer {
            let frames = batch.count &- startCount
            if frames > 0 { counters.received(packets: frames, bytes: bytes) }
        }
        while consumed < room, let flags = headFlags() {
            var walker = chain(headFlags: flags)
            switch TransmitChain.gather(&walker, into: batch, headerLength: configuration.headerLength,
                                        maxFrameLength: maxFrameLength, memory: mem) {
            case .broken(let e):
                fail(e)
                return consumed
            case .noRoom where batch.count > 0:
                // Left for the next burst, which starts with an empty batch.
                return consumed
            case .noRoom:
                // Alone in an empty batch and still too big: drop it, or it would block the queue forever.
                counters.dropped(.tooManySegments)
            case .dropped(let reason):
                counters.dropped(reason)
            case .frame:
                bytes &+= UInt64(batch.length(of: batch.count &- 1))
            }
            // Every outcome but broken walked the chain to its end.
            take(walker, written: 0)
            consumed &+= 1
        }
        return consumed
    }

    /// Gives the buffers of everything pulled since the last release back to the driver.
    @inlinable
    public func release() {
        guard pendingCount > 0, isRunning else { return }
        if configuration.inOrder {
            releaseInOrder()
        } else {
            publishUsed()
        }
    }

    /// With VIRTIO_F_IN_ORDER, one used descriptor for the whole burst (virtio
    /// 1.2 §2.8, "In-order use of descriptors"): written where the burst's
    /// first would go, with the id of its last chain, and the used position
    /// skips past every descriptor the burst held; the driver counts the chains
    /// back from the id, in the order it made them available. A TX chain's
    /// used length is 0, so no entry carries anything the one does not.
    /// Three stores per burst instead of three per chain, on one line: DPDK's
    /// vhost dequeue does the same, and DPDK's virtio PMD reclaims such a burst
    /// in one step.
    @inlinable
    func releaseInOrder() {
        // SAFETY: release checked isRunning, so ring is the 16 * ringSize bytes start() translated, and
        // usedPosition < ringSize; pending holds pendingCount > 0 entries (release checked).
        let d = ring.unsafelyUnwrapped + Int(usedPosition) &* PackedRingLayout.descriptorSize
        let last = pending.unsafelyUnwrapped[pendingCount &- 1]
        d.storeBytes(of: 0 as UInt32, toByteOffset: 8, as: UInt32.self)
        d.storeBytes(of: UInt16(truncatingIfNeeded: last), toByteOffset: 12, as: UInt16.self)
        // Release: the id and length before the flags that make them the driver's.
        ferry_store_release_u16(d + 14, usedWrap ? PackedRingLayout.flagAvail | PackedRingLayout.flagUsed : 0)
        if configuration.dirtyLog != nil { markUsedDescriptors(from: UInt32(usedPosition), count: 1) }
        // No overflow: usedPosition < ringSize and inFlight <= ringSize.
        var position = UInt32(usedPosition) &+ inFlight
        if position >= ringSize {
            position &-= ringSize
            usedWrap.toggle()
        }
        usedPosition = UInt16(truncatingIfNeeded: position)
        pendingCount = 0
        inFlight = 0
        notifyIfNeeded()
    }
}
