import Glibc
import Packets

/// One frame of a batch on its way into a guest's receive chains: where the
/// copy stands in the frame's virtio-net header and segments, and where
/// num_buffers landed in guest memory. Push fills one chain after another with
/// it (several with mergeable buffers), whatever the ring layout; the batch is
/// passed to each call rather than held, so no reference is counted per frame.
@usableFromInline
struct FrameCopy {
    @usableFromInline let header: UnsafeMutableRawPointer
    @usableFromInline let headerLength: Int
    @usableFromInline let acceptedHeaderFlags: UInt8
    @usableFromInline var headerDone = 0
    @usableFromInline var segment: Int
    @usableFromInline var source: UnsafeMutableRawPointer
    @usableFromInline var sourceLeft: Int
    /// Bytes of header and frame not yet written.
    @usableFromInline var remaining: Int
    /// Where num_buffers (header bytes 10 and 11) landed in guest memory.
    @usableFromInline var numBuffersLow: UnsafeMutableRawPointer? = nil
    @usableFromInline var numBuffersHigh: UnsafeMutableRawPointer? = nil

    @inlinable
    init(frame: Int, of batch: PacketBatch, headerLength: Int, acceptedHeaderFlags: UInt8) {
        header = batch.header(frame)
        self.headerLength = headerLength
        self.acceptedHeaderFlags = acceptedHeaderFlags
        let segments = batch.segments(of: frame)
        segment = segments.lowerBound
        source = segments.isEmpty ? header : batch.segmentBase(segment)
        sourceLeft = segments.isEmpty ? 0 : batch.segmentLength(segment)
        remaining = headerLength &+ batch.length(of: frame)
    }

    @inlinable
    var isDone: Bool { remaining == 0 }

    /// Copies as much of the frame as the chain holds: the header first, then
    /// the frame's segments, in as many pieces as the buffers need; each piece
    /// written is told to `writes` (the dirty log during a live migration).
    /// Returns the bytes written into this chain, or why the chain is bad.
    // SAFETY: each piece is `length` writable bytes the walker translated inside guest memory in this
    // burst, and every write takes at most `room`, what is left of it, so dst stays inside the piece
    // (the two moves only when room >= 12); `header` is the frame's header slot, read below
    // headerLength <= 12; `source` is a segment with sourceLeft bytes left (the batch invariant), and
    // the next segment is taken only while bytes of the frame remain (remaining counts header plus
    // frame length, which the segments cover); numBuffersLow/High point at bytes 10 and 11 of the
    // header just written in a piece.
    @inlinable
    mutating func fill<Source, W: GuestWrites>(_ chain: inout ReceiveChainWalker<Source>, from batch: PacketBatch,
                                               memory mem: GuestMemory, writes: W) -> Result<Int, VirtqueueError> {
        var written = 0
        while remaining > 0, let step = chain.next(memory: mem) {
            var dst: UnsafeMutableRawPointer
            var room: Int
            switch step {
            case .failure(let e):
                return .failure(e)
            case .piece(let p, let length):
                dst = p
                room = length
            }
            let pieceStart = dst
            if headerDone == 0 && headerLength == 12 && room >= 12 {
                // The usual case, the whole header into the first buffer: two moves, no call.
                // The flags byte (lowest on little-endian) keeps only what the driver accepts.
                let flagsMask = 0xFFFF_FFFF_FFFF_FF00 as UInt64 | UInt64(acceptedHeaderFlags)
                dst.storeBytes(of: header.loadUnaligned(as: UInt64.self) & flagsMask, as: UInt64.self)
                dst.storeBytes(of: header.loadUnaligned(fromByteOffset: 8, as: UInt32.self), toByteOffset: 8,
                               as: UInt32.self)
                numBuffersLow = dst + 10
                numBuffersHigh = dst + 11
                headerDone = 12
                dst += 12
                room &-= 12
                remaining &-= 12
                written &+= 12
            }
            while room > 0 && remaining > 0 {
                if headerDone < headerLength {
                    let take = min(room, headerLength &- headerDone)
                    memcpy(dst, header + headerDone, take)
                    if headerDone == 0 { dst.storeBytes(of: header.load(as: UInt8.self) & acceptedHeaderFlags, as: UInt8.self) }
                    if headerDone <= 10 && 10 < headerDone &+ take { numBuffersLow = dst + (10 &- headerDone) }
                    if headerDone <= 11 && 11 < headerDone &+ take { numBuffersHigh = dst + (11 &- headerDone) }
                    headerDone &+= take
                    dst += take
                    room &-= take
                    remaining &-= take
                    written &+= take
                    continue
                }
                if sourceLeft == 0 {
                    segment &+= 1
                    source = batch.segmentBase(segment)
                    sourceLeft = batch.segmentLength(segment)
                }
                let take = min(room, sourceLeft)
                memcpy(dst, source, take)
                source += take
                sourceLeft &-= take
                dst += take
                room &-= take
                remaining &-= take
                written &+= take
            }
            writes.written(pieceStart, count: dst - pieceStart)
        }
        return .success(written)
    }

    /// §5.1.6.4: num_buffers is the number of chains used, 1 without MRG_RXBUF
    /// (absent from a legacy 10-byte header).
    /// Written last, so marked again after (its page was marked with the piece it lies in).
    @inlinable
    func setNumBuffers<W: GuestWrites>(_ chains: Int, writes: W) {
        // SAFETY: numBuffersLow and numBuffersHigh point into the header `fill` wrote in this burst's
        // chain, whose pieces stay translated (and the chain the driver's to fill) until the burst
        // publishes it.
        guard headerLength >= 12 else { return }
        let n = UInt16(truncatingIfNeeded: chains)
        if let low = numBuffersLow {
            low.storeBytes(of: UInt8(truncatingIfNeeded: n), as: UInt8.self)
            writes.written(low, count: 1)
        }
        if let high = numBuffersHigh {
            high.storeBytes(of: UInt8(truncatingIfNeeded: n >> 8), as: UInt8.self)
            writes.written(high, count: 1)
        }
    }
}
