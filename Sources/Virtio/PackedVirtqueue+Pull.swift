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
        // The usual chain, one buffer with the 12-byte header in front of the frame, in runs.
        // A front-end that sends other chains keeps doing so: once a run takes none, the rest
        // of the burst goes chain by chain (as SplitVirtqueue.pull; docs/PERFORMANCE.md).
        var singleBuffers = configuration.headerLength == PacketBatch.headerSize
        while consumed < room {
            if singleBuffers {
                let run = pullSingleBuffers(room &- consumed, into: batch, memory: mem)
                consumed &+= run.taken
                bytes &+= run.bytes
                if consumed == room { break }
                singleBuffers = run.taken > 0
            }
            guard let flags = headFlags() else { break }
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
}
