import Packets

/// A TX ring that pulls its usual chain, one buffer with the 12-byte header in
/// front of the frame, in runs: find the run (checks and translations, loads
/// only), take it into the batch, then use it. Both layouts conform
/// (SplitVirtqueue+SingleBuffers.swift, PackedVirtqueue+SingleBuffers.swift);
/// the run loop below is theirs to share.
@usableFromInline
protocol SingleBufferRuns: AnyObject {
    /// Pass 1: the next chains from the read position, up to `count` (at most
    /// `singleBufferRun`), while each is a single buffer. Consumes nothing.
    func findSingleBuffers(_ count: Int, memory mem: GuestMemory) -> Int
    /// Pass 2: the first `count` chains found, appended to `batch` as frames of
    /// one segment each. Returns their frames' bytes.
    func takeSingleBuffers(_ count: Int, into batch: PacketBatch) -> UInt64
    /// Pass 3: the first `count` chains found, used (not yet published:
    /// `release` does that) and consumed.
    func useSingleBuffers(_ count: Int)
}

extension SingleBufferRuns {
    /// The most chains one run finds before it takes them.
    @inlinable
    static var singleBufferRun: Int { 64 }

    /// Takes up to `count` chains, in runs, while each is a single buffer and
    /// the batch has segments left; the caller checked `count` against
    /// `batch.room` (and, for a split ring, the avail index) and that the
    /// header is 12 bytes. A run shorter than asked ends the pull: the next
    /// chain is not a single buffer, or the driver has offered no more.
    /// Returns the chains taken and their frames' bytes (headers not counted).
    @inlinable
    func pullSingleBuffers(_ count: Int, into batch: PacketBatch, memory mem: GuestMemory)
        -> (taken: Int, bytes: UInt64)
    {
        var taken = 0
        var bytes: UInt64 = 0
        while taken < count {
            let want = min(count &- taken, batch.freeSegments, Self.singleBufferRun)
            guard want > 0 else { break }
            let found = findSingleBuffers(want, memory: mem)
            bytes &+= takeSingleBuffers(found, into: batch)
            useSingleBuffers(found)
            taken &+= found
            if found < want { break }
        }
        return (taken, bytes)
    }
}
