import CFerry
import Glibc
import Packets

/// The guest buffers one software segment goes into, whatever the ring's
/// layout: the pieces of the receive chains a segment sink (split:
/// `ReceiveChainSink`, packed: `PackedReceiveChainSink`) listed for it, the
/// virtio-net header first, written by offset, each write marked through the
/// burst's `GuestWrites` (a live migration's log, or nothing); and the
/// segments the sink delivered.
///
/// The segmenter writes a segment's payload first and its headers last (it
/// needs the payload's sum for the checksum), so the writes go by offset with
/// a cursor that remembers where the last one ended.
@usableFromInline
struct SegmentBuffers<Writes: GuestWrites> {
    /// Buffers (and so chains) one segment may span: more is a chain no
    /// driver posts (`rx_buffer_too_small`); the usual push still serves it
    /// with frames that need no segmenting.
    @usableFromInline static var maxPieces: Int { 64 }

    /// Room for `maxPieces`, owned by the queue.
    @usableFromInline let pieces: UnsafeMutablePointer<iovec>
    @usableFromInline let writes: Writes
    /// The driver's virtio-net header: its length, and the flags it may be given.
    @usableFromInline let headerLength: Int
    @usableFromInline let acceptedFlags: UInt8
    @usableFromInline var count = 0
    /// Where the next sequential write goes: piece `cursor`, which starts at
    /// byte `cursorStart` of the segment's buffers.
    @usableFromInline var cursor = 0
    @usableFromInline var cursorStart = 0
    /// The chains the segment begun last spans, and its length (virtio-net header not counted).
    @usableFromInline var chains = 0
    @usableFromInline var length = 0
    /// Segments delivered and their bytes (virtio-net header not counted).
    @usableFromInline var delivered = 0
    @usableFromInline var bytes: UInt64 = 0

    @inlinable
    init(pieces: UnsafeMutablePointer<iovec>, headerLength: Int, acceptedFlags: UInt8, writes: Writes) {
        self.pieces = pieces
        self.headerLength = headerLength
        self.acceptedFlags = acceptedFlags
        self.writes = writes
    }

    /// The room the segment begun last needs: its virtio-net header and its bytes.
    @inlinable
    var need: Int { headerLength &+ length }

    /// Forgets the last segment's buffers: a segment of `length` bytes begins.
    @inlinable
    mutating func begin(length: Int) {
        count = 0
        cursor = 0
        cursorStart = 0
        chains = 0
        self.length = length
    }

    /// Adds `length` bytes at `base`; false when the segment already spans `maxPieces`.
    @inlinable
    mutating func append(_ base: UnsafeMutableRawPointer, length: Int) -> Bool {
        if count == Self.maxPieces { return false }
        // SAFETY: count < maxPieces (the test above), the length of `pieces`.
        pieces[count] = iovec(iov_base: base, iov_len: length)
        count &+= 1
        return true
    }

    /// Copies `count` bytes of the segment to its byte `offset` (past the virtio-net header).
    @inlinable
    mutating func write(_ bytes: UnsafeRawPointer, count: Int, at offset: Int) {
        copy(bytes, count: count, to: headerLength &+ offset)
    }

    /// Copies `length` bytes to byte `position` of the segment's buffers.
    @inlinable
    mutating func copy(_ bytes: UnsafeRawPointer, count length: Int, to position: Int) {
        // The headers come last, at the start: go back to the first piece.
        // SAFETY: cursor < count <= maxPieces: it starts at 0 and moves on only while cursor + 1 <
        // count, or after the last byte of a piece when bytes are left, which the pieces cover (see
        // below).
        if position < cursorStart {
            cursor = 0
            cursorStart = 0
        }
        while cursor &+ 1 < count && position >= cursorStart &+ pieces[cursor].iov_len {
            cursorStart &+= pieces[cursor].iov_len
            cursor &+= 1
        }
        var source = bytes
        var left = length
        var within = position &- cursorStart
        while left > 0 {
            let piece = pieces[cursor]
            let take = min(piece.iov_len &- within, left)
            // SAFETY: the sink listed pieces covering exactly header plus
            // segment, each translated inside guest memory this burst; the
            // segmenter writes only inside the length it announced.
            let target = piece.iov_base.unsafelyUnwrapped + within
            memcpy(target, source, take)
            writes.written(target, count: take)
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

    /// Finishes the segment: its virtio-net header at its start, with the
    /// flags the driver accepts and num_buffers (§5.1.6.4) the chains it used
    /// (1 without MRG_RXBUF), built privately, then copied in.
    @inlinable
    mutating func finish(_ header: VirtioNetHeader) {
        // SAFETY: `raw` is 12 bytes: the header's 10 and num_buffers' 2 at offset 10 fit it.
        var raw: (UInt64, UInt32) = (0, 0)
        withUnsafeMutableBytes(of: &raw) { h in
            let p = h.baseAddress.unsafelyUnwrapped
            header.store(to: p)
            p.storeBytes(of: header.flags & acceptedFlags, as: UInt8.self)
            p.storeBytes(of: UInt16(truncatingIfNeeded: chains).littleEndian, toByteOffset: 10, as: UInt16.self)
            copy(p, count: headerLength, to: 0)
        }
        delivered &+= 1
        bytes &+= UInt64(length)
    }
}


extension SegmentBuffers {
    /// The buffers of a ring configured by `configuration`, its segment pieces at `pieces`.
    @inlinable
    init(pieces: UnsafeMutablePointer<iovec>, configuration: RingConfiguration, writes: Writes) {
        self.init(pieces: pieces, headerLength: configuration.headerLength,
                  acceptedFlags: configuration.acceptedHeaderFlags, writes: writes)
    }
}

/// A segment sink that writes into a guest's receive chains through its
/// `SegmentBuffers`: the split ring's `ReceiveChainSink` and the packed
/// ring's `PackedReceiveChainSink`, which differ only in how they find and
/// give back chains.
@usableFromInline
protocol ReceiveChainSegmentSink: DestinationSegmentSink {
    associatedtype Writes: GuestWrites
    /// Read once per frame, never written through the protocol: a `modify` through it
    /// from a generic caller allocates its coroutine frame in an unoptimized build (the
    /// allocation probe saw one per write), so each sink forwards `write` itself.
    var buffers: SegmentBuffers<Writes> { get }
    /// A chain broke a rule: the queue is stopped (its `error` set).
    var isBroken: Bool { get }
}

extension ReceiveChainSegmentSink {
    /// Segments frame `frame` of `batch` (a GSO frame the driver did not
    /// negotiate) into the sink's chains, counting drops on `counters` and what
    /// went on `sent` and `bytes`. False when the queue broke.
    @inlinable
    mutating func segment(_ frame: Int, of batch: PacketBatch, with segmenter: SoftwareSegmenter,
                          checksum: SoftwareSegmenter.Checksum, counters: QueueCounters,
                          sent: inout Int, bytes: inout UInt64) -> Bool {
        segmenter.transmit(batch.frameSegments(frame), header: batch.header(frame), checksum: checksum,
                           untaggedLimit: Int.max &- Ethernet.tagSize, into: &self, counters: counters)
        sent &+= buffers.delivered
        bytes &+= buffers.bytes
        return !isBroken
    }
}
