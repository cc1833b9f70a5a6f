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
        while consumed < n {
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
            writeUsed(slot: usedIndex &+ pendingUsed, id: h, length: 0)
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

    /// Walks one device-readable chain: the first `headerLength` bytes go to the
    /// frame's header slot, the rest become segments. `mem` comes from the
    /// caller, loaded once per burst: loading the property per chain cost a
    /// retain and a release per frame.
    @inlinable
    func readChain(head: UInt16, into batch: PacketBatch, memory mem: GuestMemory) -> PulledChain {
        var walker = DescriptorWalker(table: desc.unsafelyUnwrapped, size: UInt32(mask) &+ 1, head: head)
        let frame = batch.count
        let header = batch.header(frame)
        var headerLeft = headerLength
        var total: UInt64 = 0
        let firstSegment = batch.segmentCount
        var segments = 0
        let freeSegments = batch.freeSegments
        var overflowed = false
        while let step = walker.next(memory: mem) {
            let d: Descriptor
            switch step {
            case .failure(let e): fail(e); return .broken
            case .success(let value): d = value
            }
            if d.writable { fail(.writableInDriverChain); return .broken }
            total &+= UInt64(d.length)
            if total > UInt64(maxFrameLength) { fail(.frameTooLong(total)); return .broken }
            // A chain too long for the batch is still walked to its end, so a
            // hostile chain cannot hide a loop behind the segment limit.
            if overflowed { continue }
            var address = d.address
            var left = d.length
            while left > 0 {
                guard let (p, piece) = mem.translatePiece(GuestAddress(address), length: left) else {
                    fail(.descriptorAddressInvalid(address: d.address, length: d.length)); return .broken
                }
                var ptr = p
                var body = piece
                if headerLeft == 12 && body >= 12 {
                    // The usual case, a whole 12-byte header in one piece: two moves, no call.
                    header.storeBytes(of: ptr.loadUnaligned(as: UInt64.self), as: UInt64.self)
                    header.storeBytes(of: ptr.loadUnaligned(fromByteOffset: 8, as: UInt32.self), toByteOffset: 8,
                                      as: UInt32.self)
                    headerLeft = 0
                    ptr += 12
                    body &-= 12
                } else if headerLeft > 0 {
                    let take = Int(body) < headerLeft ? Int(body) : headerLeft
                    memcpy(header + (headerLength &- headerLeft), ptr, take)
                    headerLeft &-= take
                    ptr += take
                    body &-= UInt32(take)
                }
                if body > 0 {
                    if segments == freeSegments { overflowed = true; break }
                    batch.setSegment(firstSegment &+ segments, base: ptr, length: body)
                    segments &+= 1
                }
                address &+= UInt64(piece)
                left &-= piece
            }
        }
        if overflowed { return .noRoom }
        // A frame needs at least an Ethernet header behind the virtio-net header.
        if headerLeft > 0 || total < UInt64(headerLength &+ Ethernet.headerSize) { return .dropped(.runt) }
        if headerLength < PacketBatch.headerSize {
            // Legacy 10-byte header: num_buffers is absent.
            header.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
        }
        batch.appendFrame(segments: firstSegment ..< firstSegment &+ segments,
                          length: UInt32(truncatingIfNeeded: total) &- UInt32(headerLength))
        return .frame
    }
}
