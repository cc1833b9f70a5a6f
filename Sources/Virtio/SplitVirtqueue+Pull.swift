import CFerry
import Glibc
import Packets

/// What became of one chain the driver offered on a TX queue.
public enum PulledChain {
    case frame
    /// Consumed and returned to the driver, but not forwarded (counted by the caller).
    case dropped(DropReason)
    /// Did not fit in the batch's remaining segments; left for the next burst.
    case noRoom
    /// The guest broke the rules; the queue is stopped.
    case broken
}

extension SplitVirtqueue {
    /// Takes up to `batch.capacity - batch.count` chains from a device-readable
    /// (TX) queue into `batch`, without copying frame bytes: segments point into
    /// guest memory. Used entries are written but not published until `release`,
    /// so the guest cannot reuse the buffers while the frames are in flight.
    /// Returns how many chains were consumed (frames plus drops); drops are
    /// counted into `counters`.
    @inlinable
    public func pull(into batch: PacketBatch, counters: QueueCounters) -> Int {
        guard isRunning, let available = availableCount(), available > 0, let mem = memory else { return 0 }
        let room = batch.room
        let n = available < room ? available : room
        var consumed = 0
        var bytes: UInt64 = 0
        let startCount = batch.count
        defer {
            let frames = batch.count &- startCount
            if frames > 0 { counters.received(packets: frames, bytes: bytes) }
        }
        // A front-end that sends frames in single buffers keeps doing so: once a
        // run takes none, the rest of the burst goes chain by chain.
        var singleBuffers = configuration.headerLength == PacketBatch.headerSize
        while consumed < n {
            if singleBuffers {
                let (taken, takenBytes) = pullSingleBuffers(n &- consumed, into: batch, memory: mem)
                consumed &+= taken
                bytes &+= takenBytes
                if consumed == n { break }
                singleBuffers = taken > 0
            }
            // The next chain is not a single buffer (or breaks a rule): walked the general way.
            guard let h = head(at: lastAvail) else { break }
            let result = readChain(head: h, into: batch, memory: mem)
            switch result {
            case .broken:
                return consumed
            case .noRoom where batch.count > 0:
                // Leave it for the next burst, which starts with an empty batch
                // (frames from an earlier pull into this batch count too).
                return consumed
            case .noRoom:
                // Alone in an empty batch and still too big: drop it, or it would block the queue forever.
                counters.dropped(.tooManySegments)
            case .dropped(let reason):
                counters.dropped(reason)
            case .frame:
                bytes &+= UInt64(batch.length(of: batch.count &- 1))
            }
            writeUsed(at: usedIndex &+ pendingUsed, id: h, length: 0)
            pendingUsed &+= 1
            lastAvail &+= 1
            consumed &+= 1
        }
        return consumed
    }

    /// Gives the buffers of everything pulled since the last release back to the driver.
    @inlinable
    public func release() {
        guard pendingUsed > 0, isRunning else { return }
        let n = pendingUsed
        pendingUsed = 0
        publishUsed(n)
    }

    /// Walks one device-readable chain into `batch` (`TransmitChain`). `mem`
    /// comes from the caller, loaded once per burst: loading the property per
    /// chain cost a retain and a release per frame.
    @inlinable
    func readChain(head: DescriptorIndex, into batch: PacketBatch, memory mem: GuestMemory) -> PulledChain {
        var walker = DescriptorWalker(table: descriptorTable, size: UInt32(mask) &+ 1, head: head)
        switch TransmitChain.gather(&walker, into: batch, headerLength: configuration.headerLength,
                                    maxFrameLength: maxFrameLength,
                                    memory: mem) {
        case .frame: return .frame
        case .dropped(let reason): return .dropped(reason)
        case .noRoom: return .noRoom
        case .broken(let e):
            fail(e)
            return .broken
        }
    }
}
