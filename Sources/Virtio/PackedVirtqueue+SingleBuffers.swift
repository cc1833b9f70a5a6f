import CFerry
import Packets

/// A TX chain of one ring descriptor, found in a run's first pass: the buffer
/// id the driver gave it, and its buffer (virtio-net header and frame)
/// translated, `length` bytes.
@usableFromInline
struct PackedSingleBuffer {
    @usableFromInline var id: UInt16
    @usableFromInline var buffer: UnsafeMutableRawPointer
    @usableFromInline var length: UInt32

    @inlinable
    init(id: UInt16, buffer: UnsafeMutableRawPointer, length: UInt32) {
        self.id = id
        self.buffer = buffer
        self.length = length
    }
}

// SplitVirtqueue+SingleBuffers for a packed ring: TX chains of one descriptor,
// pulled in runs of up to 64. The first pass reads the descriptors from the
// read position (each available in its lap, the wrap counter followed round
// the ring's end, never more than the ring's worth in flight), checks each as
// the chain walk would refuse nothing it takes, and translates its buffer:
// loads only, so the misses on the descriptor lines the driver's CPU just wrote
// overlap instead of waiting one chain at a time (the W1 profile put 60 % of
// Ferry's time on the first touch of lines the driver wrote, docs/PERFORMANCE.md).
// The second takes them into the batch; the third records their used
// descriptors (`release` writes them) and moves the read position past them. A
// descriptor that is anything else ends the run untouched, for
// `TransmitChain.gather` to judge. The loop over runs is the split ring's
// (SingleBufferRuns.swift).
extension PackedVirtqueue: SingleBufferRuns {
    /// Pass 1 (`SingleBufferRuns`): the next descriptors from the read position,
    /// up to `count`, while each is a single buffer, into `singleBuffers`.
    @inlinable
    func findSingleBuffers(_ count: Int, memory mem: GuestMemory) -> Int {
        // SAFETY: pull checked isRunning, so ring is the 16 * ringSize bytes start() translated;
        // a cursor's position stays below ringSize.
        let r = ring.unsafelyUnwrapped
        // Locals: the store into `found` below may alias the queue's properties, which would
        // otherwise be loaded again for every chain.
        let size = ringSize
        let found = singleBuffers
        var place = avail
        // A descriptor past the ring's worth in flight is one the device has not given back.
        let readable = Int(size &- inFlight)
        let limit = count < readable ? count : readable
        let shortest = UInt32(PacketBatch.headerSize &+ Ethernet.headerSize)
        let longest = maxFrameLength
        let refused = PackedRingLayout.flagNext | PackedRingLayout.flagIndirect | PackedRingLayout.flagWrite
        var n = 0
        while n < limit {
            let d = r + Int(place.position) &* PackedRingLayout.descriptorSize
            // Acquire: the descriptor's fields are read after its flags said it is available.
            let flags = ferry_load_acquire_u16(d + 14)
            if !PackedRingLayout.isAvailable(flags, wrap: place.wrap) || flags & refused != 0 { break }
            // Each field is loaded once; the checks and the translation use the loaded values only.
            let address = d.loadUnaligned(as: UInt64.self)
            let length = d.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
            if length < shortest || length > longest { break }
            guard let buffer = mem.translate(GuestAddress(address), length: length) else { break }
            // SAFETY: n < limit <= count <= singleBufferRun, the array's capacity (pullSingleBuffers' `want`).
            found[n] = PackedSingleBuffer(id: d.loadUnaligned(fromByteOffset: 12, as: UInt16.self),
                                          buffer: buffer, length: length)
            n &+= 1
            place.advance(ringSize: size)
        }
        return n
    }

    /// Pass 2: the first `count` chains found, appended to `batch` as frames of
    /// one segment each. Returns their frames' bytes.
    @inlinable
    func takeSingleBuffers(_ count: Int, into batch: PacketBatch) -> UInt64 {
        let found = singleBuffers
        var bytes: UInt64 = 0
        var segment = batch.segmentCount
        var i = 0
        while i < count {
            // SAFETY: i < count, the chains findSingleBuffers filled (each buffer translated for its
            // length); pullSingleBuffers takes at most `room` chains (its caller's count) and at most
            // freeSegments, so `segment` stays below segmentCapacity.
            let chain = found[i]
            bytes &+= UInt64(TransmitChain.appendSingleBuffer(chain.buffer, length: chain.length, segment: segment,
                                                              to: batch))
            segment &+= 1
            i &+= 1
        }
        return bytes
    }

    /// Pass 3: the first `count` chains found, taken: each one's used descriptor
    /// owed (`release` writes them), the read position past them. One pending
    /// entry per chain from locals, the queue's counts and position moved once:
    /// taken one by one (`take`), each store into `pending` reloaded them all.
    @inlinable
    func useSingleBuffers(_ count: Int) {
        let found = singleBuffers
        // SAFETY: pending holds ringSize entries (start() allocated them); each pending entry holds
        // at least one descriptor in flight, and findSingleBuffers found at most ringSize - inFlight
        // chains, so pendingCount + count <= ringSize.
        let entries = pending.unsafelyUnwrapped + pendingCount
        var i = 0
        while i < count {
            // SAFETY: i < count, the chains findSingleBuffers filled.
            entries[i] = Self.pendingEntry(id: found[i].id, descriptors: 1, written: 0)
            i &+= 1
        }
        pendingCount &+= count
        // One ring descriptor each; count <= ringSize - inFlight (above).
        inFlight &+= UInt32(truncatingIfNeeded: count)
        avail.advance(by: UInt32(truncatingIfNeeded: count), ringSize: ringSize)
    }
}
