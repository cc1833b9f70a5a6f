import Glibc
import Packets

/// Software segmentation straight into a packed ring's receive chains, as
/// `ReceiveChainSink` does for a split ring: each segment takes the chains at
/// the read position (with MRG_RXBUF as many as it needs, num_buffers saying
/// how many; without, one that must hold it), is written there through
/// `SegmentBuffers`, and its chains are owed used descriptors, published with
/// the rest of the burst. A segment that finds too little room takes nothing.
@usableFromInline
struct PackedReceiveChainSink<Writes: GuestWrites>: ReceiveChainSegmentSink {
    @usableFromInline let queue: PackedVirtqueue
    @usableFromInline let memory: GuestMemory
    @usableFromInline var shortfall: DropReason = .noRxBuffer
    /// A chain broke a rule: the queue is stopped (`error` set).
    @usableFromInline var isBroken = false
    @usableFromInline var buffers: SegmentBuffers<Writes>

    @inlinable
    init(queue: PackedVirtqueue, memory: GuestMemory, writes: Writes) {
        self.queue = queue
        self.memory = memory
        buffers = SegmentBuffers(pieces: queue.segmentPieces, configuration: queue.configuration, writes: writes)
    }

    @inlinable
    mutating func beginSegment(length: Int) -> Bool {
        let start = (place: queue.avail, pending: queue.pendingCount,
                     inFlight: queue.inFlight)
        var got = 0
        buffers.begin(length: length)
        let need = buffers.need
        while got < need {
            // Without mergeable buffers a segment that outgrew its chain is too big for any.
            var short: DropReason? =
                buffers.chains > 0 && !queue.configuration.mergeableBuffers ? .rxBufferTooSmall : nil
            var flags: UInt16 = 0
            if short == nil {
                if let f = queue.headFlags() { flags = f } else { short = .noRxBuffer }
            }
            if short == nil {
                var walker = ReceiveChainWalker(queue.chain(headFlags: flags))
                var inChain = 0
                while short == nil && got < need, let step = walker.next(memory: memory) {
                    switch step {
                    case .failure(let e):
                        return broke(e)
                    case .piece(let p, let pieceLength):
                        let take = min(pieceLength, need &- got)
                        if buffers.append(p, length: take) {
                            got &+= take
                            inChain &+= take
                        } else {
                            short = .rxBufferTooSmall
                        }
                    }
                }
                if short == nil {
                    // The segment may end before the chain does: the rest of it is this chain's still.
                    if let e = walker.descriptors.skipRest() { return broke(e) }
                    queue.take(walker.descriptors, written: inChain)
                    buffers.chains &+= 1
                }
            }
            if let short {
                // The chains stay the driver's, for the next segment or frame.
                queue.avail = start.place
                queue.pendingCount = start.pending
                queue.inFlight = start.inFlight
                shortfall = short
                return false
            }
        }
        return true
    }

    @inlinable
    mutating func broke(_ e: VirtqueueError) -> Bool {
        queue.fail(e)
        isBroken = true
        shortfall = .deviceBroken
        return false
    }

    @inlinable
    mutating func write(_ bytes: UnsafeRawPointer, count: Int, at offset: Int) {
        buffers.write(bytes, count: count, at: offset)
    }

    @inlinable
    mutating func endSegment(header: VirtioNetHeader) {
        buffers.finish(header)
    }
}

extension PackedVirtqueue {
    /// Segments frame `frame` of `batch` (a GSO frame the driver did not
    /// negotiate) into the chains at the read position, counting drops on
    /// `counters` and what went on `sent` and `bytes`; used by `push`.
    /// Returns false when the queue broke.
    @inlinable
    func writeSegments<W: GuestWrites>(_ frame: Int, of batch: PacketBatch, memory mem: GuestMemory,
                                       segmenter: SoftwareSegmenter, checksum: SoftwareSegmenter.Checksum,
                                       counters: QueueCounters, writes: W, sent: inout Int, bytes: inout UInt64)
        -> Bool
    {
        var sink = PackedReceiveChainSink(queue: self, memory: mem, writes: writes)
        return sink.segment(frame, of: batch, with: segmenter, checksum: checksum, counters: counters,
                            sent: &sent, bytes: &bytes)
    }
}
