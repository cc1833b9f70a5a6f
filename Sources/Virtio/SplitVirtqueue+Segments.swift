import CFerry
import Glibc
import Packets

/// A receive chain a segment went into, and how many bytes of it.
@usableFromInline
struct UsedChain {
    @usableFromInline var head: DescriptorIndex
    @usableFromInline var length: UInt32

    @inlinable
    init(head: DescriptorIndex, length: UInt32) {
        self.head = head
        self.length = length
    }
}

/// Software segmentation straight into a guest's receive chains: each
/// segment takes the next available chain (with MRG_RXBUF as many chains as
/// it needs, num_buffers saying how many; without, one chain that must hold
/// it, as a big-buffer guest posts them), is written there by the segmenter
/// (`SegmentBuffers`, every write marked while a migration logs), and gets
/// its used entries. Nothing is read back from the guest's buffers.
@usableFromInline
struct ReceiveChainSink<Writes: GuestWrites>: ReceiveChainSegmentSink {
    @usableFromInline let queue: SplitVirtqueue
    @usableFromInline let memory: GuestMemory
    /// Chains the driver has made available and this burst has not used.
    @usableFromInline var availLeft: Int
    @usableFromInline var shortfall: DropReason = .noRxBuffer
    /// A chain broke a rule: the queue is stopped (`error` set).
    @usableFromInline var isBroken = false
    @usableFromInline var buffers: SegmentBuffers<Writes>

    @inlinable
    init(queue: SplitVirtqueue, memory: GuestMemory, availLeft: Int, writes: Writes) {
        self.queue = queue
        self.memory = memory
        self.availLeft = availLeft
        buffers = SegmentBuffers(pieces: queue.segmentPieces, configuration: queue.configuration, writes: writes)
    }

    @inlinable
    mutating func beginSegment(length: Int) -> Bool {
        let chains = queue.segmentChains
        var got = 0
        buffers.begin(length: length)
        let need = buffers.need
        var slot = queue.lastAvail
        while got < need {
            // Without mergeable buffers a segment that outgrew its chain is too big for any.
            if buffers.chains > 0 && !queue.configuration.mergeableBuffers {
                shortfall = .rxBufferTooSmall
                return false
            }
            if buffers.chains == availLeft {
                shortfall = .noRxBuffer
                return false
            }
            guard let h = queue.head(at: slot) else {
                isBroken = true
                shortfall = .deviceBroken
                return false
            }
            var walker = ReceiveChainWalker(table: queue.descriptorTable, size: UInt32(queue.mask) &+ 1, head: h)
            var inChain = 0
            while got < need, let step = walker.next(memory: memory) {
                switch step {
                case .failure(let e):
                    queue.fail(e)
                    isBroken = true
                    shortfall = .deviceBroken
                    return false
                case .piece(let p, let pieceLength):
                    let take = min(pieceLength, need &- got)
                    guard buffers.append(p, length: take) else {
                        shortfall = .rxBufferTooSmall
                        return false
                    }
                    got &+= take
                    inChain &+= take
                }
            }
            // A chain holds at least one byte (DescriptorWalker refuses empty
            // descriptors), so there are never more chains than pieces.
            chains[buffers.chains] = UsedChain(head: h, length: UInt32(truncatingIfNeeded: inChain))
            buffers.chains &+= 1
            slot &+= 1
        }
        return true
    }

    @inlinable
    mutating func write(_ bytes: UnsafeRawPointer, count: Int, at offset: Int) {
        buffers.write(bytes, count: count, at: offset)
    }

    @inlinable
    mutating func endSegment(header: VirtioNetHeader) {
        buffers.finish(header)
        let chains = queue.segmentChains
        var i = 0
        while i < buffers.chains {
            queue.writeUsed(at: queue.usedIndex &+ queue.pendingUsed, id: chains[i].head, length: chains[i].length)
            queue.pendingUsed &+= 1
            queue.lastAvail &+= 1
            i &+= 1
        }
        availLeft &-= buffers.chains
    }
}

extension SplitVirtqueue {
    /// Segments frame `frame` of `batch` (a GSO frame the driver did not
    /// negotiate) into the next available chains, one segment per chain (or
    /// per chains, with MRG_RXBUF), counting drops on `counters` and what went
    /// on `sent` and `bytes`; used by `push`. Returns false when the queue broke.
    @inlinable
    func writeSegments<W: GuestWrites>(_ frame: Int, of batch: PacketBatch, memory mem: GuestMemory,
                                       availLeft: inout Int, segmenter: SoftwareSegmenter,
                                       checksum: SoftwareSegmenter.Checksum, counters: QueueCounters, writes: W,
                                       sent: inout Int, bytes: inout UInt64) -> Bool {
        var sink = ReceiveChainSink(queue: self, memory: mem, availLeft: availLeft, writes: writes)
        let healthy = sink.segment(frame, of: batch, with: segmenter, checksum: checksum, counters: counters,
                                   sent: &sent, bytes: &bytes)
        availLeft = sink.availLeft
        return healthy
    }
}
