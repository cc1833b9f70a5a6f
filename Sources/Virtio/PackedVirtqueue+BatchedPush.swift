import CFerry
import Glibc
import Packets

// Four frames at once into four descriptors that share a cache line: the
// push's fast path. Into a guest that keeps its RX ring full, each line of the
// ring was last written by the driver on the other CPU, and reading it costs a
// line transfer (47-55 ns on this machine) — about what the rest of a 64-byte
// frame's push costs. Taken one chain at a time, the walk waits on that line at
// the head and then runs through a general chain walker per frame; taken four
// at a time, one check of four flags finds the line all available single
// buffers, the four fields are read while the line is here, and the copies
// follow without a walker. The buffers' lines are asked for (prefetchw) before
// the first copy and the next line of descriptors as the batch starts, so
// their transfers overlap the work instead of each stalling a store or a load
// in turn: 1.5-2x W2's rate (docs/PERFORMANCE.md, "Packed rings, session 7").
// DPDK's vhost enqueue batches packed descriptors the same way
// (virtio_dev_rx_batch_packed, which prefetches the buffers too). Anything else — a chain, an indirect
// table, a frame that does not fit its buffer or comes in several pieces, a
// buffer outside one memory region, a batch that would wrap or overrun the
// ring's worth in flight — falls back to `writeFrame`, whose checks then decide
// (drop, break the device, or deliver): the fast path delivers only what the
// per-chain path would have delivered the same way, and never fails a queue.
extension PackedVirtqueue {
    /// Descriptors a batch takes: 4 × 16 bytes, one 64-byte line.
    @usableFromInline static let pushBatchSize = 4

    /// Writes frames `frame ..< frame + 4` of `batch` into the four ring
    /// descriptors at the read position, takes them and returns true when all
    /// four allow the fast path (see above); otherwise writes and takes nothing.
    @inlinable
    func pushBatch<W: GuestWrites>(_ frame: Int, of batch: PacketBatch, memory mem: GuestMemory,
                                   segmenting: Bool, acceptance: OffloadAcceptance, writes: W) -> Bool {
        let position = UInt32(avail.position)
        // Aligned to the batch and short of the ring's end: no wrap inside it,
        // and one line when the ring itself sits on a line (rings are page-aligned in practice).
        guard position & 3 == 0, position &+ 4 <= ringSize, inFlight &+ 4 <= ringSize,
              configuration.headerLength == 12 else { return false }
        if segmenting {
            // A frame the driver cannot take whole is cut into chains by writeSegments.
            guard acceptance.accepts(header: batch.header(frame)),
                  acceptance.accepts(header: batch.header(frame &+ 1)),
                  acceptance.accepts(header: batch.header(frame &+ 2)),
                  acceptance.accepts(header: batch.header(frame &+ 3)) else { return false }
        }
        // SAFETY: position + 4 <= ringSize (checked above), and push runs only while
        // isRunning, so ring holds the ringSize * 16 bytes start() translated.
        let d = ring.unsafelyUnwrapped + Int(position) &* PackedRingLayout.descriptorSize
        // The next batch's line, on its way while this one's frames are copied.
        // SAFETY: position + 8 <= ringSize, so d + 64 is the start of a descriptor inside the translated ring.
        if position &+ 8 <= ringSize { ferry_prefetch_read(d + 64) }
        // Available in this lap, device-writable, one buffer each (no NEXT, no INDIRECT):
        // AVAIL == wrap and USED != wrap (`PackedRingLayout.isAvailable`) as one compare.
        let checked = PackedRingLayout.flagAvail | PackedRingLayout.flagUsed | PackedRingLayout.flagNext
            | PackedRingLayout.flagIndirect | PackedRingLayout.flagWrite
        let wanted = (avail.wrap ? PackedRingLayout.flagAvail : PackedRingLayout.flagUsed) | PackedRingLayout.flagWrite
        // Acquire, each: every descriptor's fields are read after its flags said it is available.
        guard ferry_load_acquire_u16(d + 14) & checked == wanted,
              ferry_load_acquire_u16(d + 30) & checked == wanted,
              ferry_load_acquire_u16(d + 46) & checked == wanted,
              ferry_load_acquire_u16(d + 62) & checked == wanted else { return false }
        guard let b0 = batchBuffer(d, for: frame, of: batch, memory: mem),
              let b1 = batchBuffer(d + 16, for: frame &+ 1, of: batch, memory: mem),
              let b2 = batchBuffer(d + 32, for: frame &+ 2, of: batch, memory: mem),
              let b3 = batchBuffer(d + 48, for: frame &+ 3, of: batch, memory: mem) else { return false }
        // The first and last line each copy writes, asked for all at once before the first
        // store: eight transfers from the driver's CPU overlap instead of queueing one by one.
        // SAFETY: batchBuffer translated 12 + length bytes at each buffer, so both bytes lie inside them.
        ferry_prefetch_write(b0)
        ferry_prefetch_write(b0 + (11 &+ batch.length(of: frame)))
        ferry_prefetch_write(b1)
        ferry_prefetch_write(b1 + (11 &+ batch.length(of: frame &+ 1)))
        ferry_prefetch_write(b2)
        ferry_prefetch_write(b2 + (11 &+ batch.length(of: frame &+ 2)))
        ferry_prefetch_write(b3)
        ferry_prefetch_write(b3 + (11 &+ batch.length(of: frame &+ 3)))
        let entries = pending.unsafelyUnwrapped + pendingCount
        // Little-endian: the flags byte is the lowest of the header's first word. Loaded once: after
        // each copy (an opaque memcpy) the configuration would be loaded again.
        let flagsMask = 0xFFFF_FFFF_FFFF_FF00 as UInt64 | UInt64(configuration.acceptedHeaderFlags)
        // SAFETY: inFlight + 4 <= ringSize (checked above) and every pending entry holds at least one
        // descriptor in flight, so pendingCount + 4 <= ringSize, the entries start() allocated.
        entries[0] = copyFrame(frame, of: batch, into: b0, id: d.loadUnaligned(fromByteOffset: 12, as: UInt16.self),
                               flagsMask: flagsMask, writes: writes)
        entries[1] = copyFrame(frame &+ 1, of: batch, into: b1,
                               id: d.loadUnaligned(fromByteOffset: 28, as: UInt16.self), flagsMask: flagsMask,
                               writes: writes)
        entries[2] = copyFrame(frame &+ 2, of: batch, into: b2,
                               id: d.loadUnaligned(fromByteOffset: 44, as: UInt16.self), flagsMask: flagsMask,
                               writes: writes)
        entries[3] = copyFrame(frame &+ 3, of: batch, into: b3,
                               id: d.loadUnaligned(fromByteOffset: 60, as: UInt16.self), flagsMask: flagsMask,
                               writes: writes)
        pendingCount &+= 4
        inFlight &+= 4
        avail.advance(by: 4, ringSize: ringSize)
        return true
    }

    /// The host address of the buffer of descriptor `d` if frame `frame` goes
    /// there whole, in one piece, with its header: nil sends the batch to the
    /// per-chain path. The descriptor is the driver's; its flags were checked.
    @inlinable
    func batchBuffer(_ d: UnsafeMutableRawPointer, for frame: Int, of batch: PacketBatch, memory mem: GuestMemory)
        -> UnsafeMutableRawPointer?
    {
        guard batch.segmentCount(of: frame) == 1 else { return nil }
        // SAFETY: d is one of the four descriptors pushBatch checked lie inside the translated ring.
        let address = d.loadUnaligned(as: UInt64.self)
        let length = d.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        // No overflow: a frame is at most 64 KiB and some.
        let needed = 12 &+ batch.length(of: frame)
        // The per-chain path refuses a buffer whose end wraps even if the frame would fit before it.
        guard Int(length) >= needed, !address.addingReportingOverflow(UInt64(length)).overflow else { return nil }
        return mem.translate(GuestAddress(address), length: UInt32(truncatingIfNeeded: needed))
    }

    /// Writes the header (flags masked by `flagsMask`: those the driver accepts;
    /// num_buffers 1: one chain) and frame `frame` into `buffer`, tells
    /// `writes`, and returns the chain's pending entry.
    @inlinable
    func copyFrame<W: GuestWrites>(_ frame: Int, of batch: PacketBatch, into buffer: UnsafeMutableRawPointer,
                                   id: UInt16, flagsMask: UInt64, writes: W) -> UInt64 {
        let header = batch.header(frame)
        let length = batch.length(of: frame)
        // Little-endian: num_buffers is the upper half of the header's last word.
        // SAFETY: batchBuffer translated 12 + length bytes at buffer inside one region of guest memory.
        buffer.storeBytes(of: header.loadUnaligned(as: UInt64.self) & flagsMask, as: UInt64.self)
        buffer.storeBytes(of: header.loadUnaligned(fromByteOffset: 8, as: UInt32.self) & 0xFFFF | 1 << 16,
                          toByteOffset: 8, as: UInt32.self)
        // SAFETY: the frame has one segment (batchBuffer checked) of `length` bytes, room for them checked there.
        memcpy(buffer + 12, batch.segmentBase(batch.segments(of: frame).lowerBound), length)
        writes.written(buffer, count: 12 &+ length)
        return Self.pendingEntry(id: id, descriptors: 1, written: 12 &+ length)
    }
}
