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
/// it, as a big-buffer guest posts them), is written there by the segmenter,
/// and gets its used entries. Nothing is read back from the guest's buffers.
///
/// The segmenter writes a segment's payload first and its headers last (it
/// needs the payload's sum for the checksum), so the segment's buffers are
/// listed in `beginSegment` and written by offset. A chain cut into more
/// than `maxPieces` buffers before it holds a segment is not used
/// (`rx_buffer_too_small`): no driver posts one, and the usual push, which
/// streams, still serves it with frames that need no segmenting.
@usableFromInline
struct ReceiveChainSink: DestinationSegmentSink {
    /// Buffers (and so chains) one segment may span.
    @usableFromInline static let maxPieces = 64

    @usableFromInline let queue: SplitVirtqueue
    @usableFromInline let memory: GuestMemory
    /// Chains the driver has made available and this burst has not used.
    @usableFromInline var availLeft: Int
    @usableFromInline var shortfall: DropReason = .noRxBuffer
    /// A chain broke a rule: the queue is stopped (`error` set).
    @usableFromInline var isBroken = false
    /// Segments delivered and their bytes (virtio-net header not counted).
    @usableFromInline var delivered = 0
    @usableFromInline var bytes: UInt64 = 0

    @usableFromInline var pieceCount = 0
    @usableFromInline var chainCount = 0
    @usableFromInline var length = 0
    /// Where the next sequential write goes: piece `cursor`, which starts at
    /// byte `cursorStart` of the segment's buffers (its virtio-net header first).
    @usableFromInline var cursor = 0
    @usableFromInline var cursorStart = 0

    @inlinable
    init(queue: SplitVirtqueue, memory: GuestMemory, availLeft: Int) {
        self.queue = queue
        self.memory = memory
        self.availLeft = availLeft
    }

    @inlinable
    mutating func beginSegment(length: Int) -> Bool {
        let hdrLen = queue.configuration.headerLength
        let need = hdrLen &+ length
        let pieces = queue.segmentPieces
        let chains = queue.segmentChains
        var got = 0
        pieceCount = 0
        chainCount = 0
        var slot = queue.lastAvail
        while got < need {
            // Without mergeable buffers a segment that outgrew its chain is too big for any.
            if chainCount > 0 && !queue.configuration.mergeableBuffers {
                shortfall = .rxBufferTooSmall
                return false
            }
            if chainCount == availLeft {
                shortfall = .noRxBuffer
                return false
            }
            guard let h = queue.head(at: slot) else {
                isBroken = true
                shortfall = .deviceBroken
                return false
            }
            var walker = ReceiveChainWalker(table: queue.desc.unsafelyUnwrapped, size: UInt32(queue.mask) &+ 1, head: h)
            var inChain = 0
            while got < need, let step = walker.next(memory: memory) {
                switch step {
                case .failure(let e):
                    queue.fail(e)
                    isBroken = true
                    shortfall = .deviceBroken
                    return false
                case .piece(let p, let pieceLength):
                    if pieceCount == Self.maxPieces {
                        shortfall = .rxBufferTooSmall
                        return false
                    }
                    let take = min(pieceLength, need &- got)
                    pieces[pieceCount] = iovec(iov_base: p, iov_len: take)
                    pieceCount &+= 1
                    got &+= take
                    inChain &+= take
                }
            }
            // A chain holds at least one byte (DescriptorWalker refuses empty
            // descriptors), so there are never more chains than pieces.
            chains[chainCount] = UsedChain(head: h, length: UInt32(truncatingIfNeeded: inChain))
            chainCount &+= 1
            slot &+= 1
        }
        self.length = length
        cursor = 0
        cursorStart = 0
        return true
    }

    @inlinable
    mutating func write(_ bytes: UnsafeRawPointer, count: Int, at offset: Int) {
        copy(bytes, count: count, to: queue.configuration.headerLength &+ offset)
    }

    /// Copies `count` bytes to byte `position` of the segment's buffers.
    @inlinable
    mutating func copy(_ bytes: UnsafeRawPointer, count: Int, to position: Int) {
        let pieces = queue.segmentPieces
        // The headers come last, at the start: go back to the first piece.
        if position < cursorStart {
            cursor = 0
            cursorStart = 0
        }
        while cursor &+ 1 < pieceCount && position >= cursorStart &+ pieces[cursor].iov_len {
            cursorStart &+= pieces[cursor].iov_len
            cursor &+= 1
        }
        var source = bytes
        var left = count
        var within = position &- cursorStart
        while left > 0 {
            let piece = pieces[cursor]
            let take = min(piece.iov_len &- within, left)
            // SAFETY: beginSegment listed pieces covering exactly header plus
            // segment, each translated inside guest memory this burst; the
            // segmenter writes only inside the length it announced.
            memcpy(piece.iov_base.unsafelyUnwrapped + within, source, take)
            source += take
            left &-= take
            within &+= take
            if within == piece.iov_len && left > 0 {
                cursorStart &+= piece.iov_len
                cursor &+= 1
                within = 0
            }
        }
    }

    @inlinable
    mutating func endSegment(header: VirtioNetHeader) {
        // The header built privately (flags the driver accepts, num_buffers
        // §5.1.6.4: the chains used, 1 without MRG_RXBUF), then copied in.
        var raw: (UInt64, UInt32) = (0, 0)
        withUnsafeMutableBytes(of: &raw) { h in
            let p = h.baseAddress.unsafelyUnwrapped
            header.store(to: p)
            p.storeBytes(of: header.flags & queue.configuration.acceptedHeaderFlags, as: UInt8.self)
            p.storeBytes(of: UInt16(truncatingIfNeeded: chainCount).littleEndian, toByteOffset: 10, as: UInt16.self)
            copy(p, count: queue.configuration.headerLength, to: 0)
        }
        let chains = queue.segmentChains
        var i = 0
        while i < chainCount {
            queue.writeUsed(at: queue.usedIndex &+ queue.pendingUsed, id: chains[i].head, length: chains[i].length)
            queue.pendingUsed &+= 1
            queue.lastAvail &+= 1
            i &+= 1
        }
        availLeft &-= chainCount
        delivered &+= 1
        bytes &+= UInt64(length)
    }
}

extension SplitVirtqueue {
    /// Segments frame `frame` of `batch` (a GSO frame the driver did not
    /// negotiate) into the next available chains, one segment per chain (or
    /// per chains, with MRG_RXBUF), counting on `counters`; used by `push`.
    /// Returns the chains the burst has left, or nil when the queue broke.
    @inlinable
    func writeSegments(_ frame: Int, of batch: PacketBatch, memory mem: GuestMemory, availLeft: Int,
                       segmenter: SoftwareSegmenter, checksum: SoftwareSegmenter.Checksum, counters: QueueCounters)
        -> (availLeft: Int, sent: Int, bytes: UInt64, broken: Bool)
    {
        var sink = ReceiveChainSink(queue: self, memory: mem, availLeft: availLeft)
        segmenter.transmit(batch.frameSegments(frame), header: batch.header(frame), checksum: checksum,
                           untaggedLimit: Int.max &- Ethernet.tagSize, into: &sink, counters: counters)
        return (sink.availLeft, sink.delivered, sink.bytes, sink.isBroken)
    }
}
