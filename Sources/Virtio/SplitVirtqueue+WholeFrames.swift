import Packets

/// A receive chain reserved for one whole frame: the frame and its virtio-net
/// header fit the first buffer of the chain, `length` bytes from `buffer`.
@usableFromInline
struct ReservedChain {
    @usableFromInline var head: DescriptorIndex
    @usableFromInline var buffer: UnsafeMutableRawPointer
    @usableFromInline var length: Int

    @inlinable
    init(head: DescriptorIndex, buffer: UnsafeMutableRawPointer, length: Int) {
        self.head = head
        self.buffer = buffer
        self.length = length
    }
}

// The usual frame into a guest fits the first buffer of one chain (64 B frames
// always, 1518 B frames in the 2 KiB buffers drivers post). Such frames are
// pushed in three passes over a run of them instead of one frame at a time:
// 1. reserve: read the avail entries and walk each chain's first descriptor
//    (every check of `ReceiveChainWalker`). Only loads: the misses on the lines
//    the driver's CPU just wrote overlap, and no store waits behind them.
// 2. copy: header (num_buffers already 1) and frame, one stream of stores per
//    frame, small frames in line (`InlineCopy`); each frame marked after its write.
// 3. use: the used entries of the run, one after another, line by line, with
//    no store to a buffer in between; `push` publishes the index once per burst.
// Measured against the one-frame-at-a-time loop in docs/PERFORMANCE.md ("Split
// push in three passes"). A frame that does not fit this way (bigger than the
// first buffer, a GSO frame the driver refuses, a legacy 10-byte header) ends
// the run and goes through `writeFrame`, which takes every case.
extension SplitVirtqueue {
    /// The most chains one run reserves before it copies.
    @usableFromInline static let reservedChainCapacity = 64

    /// Delivers the frames of `batch` from `first` on, in runs of three passes,
    /// while each fits the first buffer of one chain and chains are left (at
    /// most `availLeft`). With `refusing`, a frame it does not accept ends the
    /// run (the caller segments it). Returns the frames delivered, their bytes,
    /// and whether a chain broke a rule (the queue is stopped; the frames
    /// before it were written, and are not published).
    @inlinable
    func pushWholeFrames<W: GuestWrites>(from first: Int, of batch: PacketBatch, memory mem: GuestMemory,
                                         availLeft: Int, refusing acceptance: OffloadAcceptance?, writes: W)
        -> (frames: Int, bytes: UInt64, broken: Bool)
    {
        var frame = first
        var bytes: UInt64 = 0
        var chainsLeft = availLeft
        while true {
            let want = min(batch.count &- frame, chainsLeft, Self.reservedChainCapacity)
            guard want > 0 else { break }
            let (reserved, broken) = reserveChains(want, from: frame, of: batch, memory: mem, refusing: acceptance)
            bytes &+= copyWholeFrames(reserved, from: frame, of: batch, writes: writes)
            useReservedChains(reserved)
            frame &+= reserved
            chainsLeft &-= reserved
            if broken { return (frame &- first, bytes, true) }
            if reserved < want { break }
        }
        return (frame &- first, bytes, false)
    }

    /// Pass 1: reserves the next chains for up to `count` frames from `first`,
    /// stopping at the first frame that does not fit its chain's first buffer.
    /// Consumes nothing: `useReservedChains` does.
    @inlinable
    func reserveChains(_ count: Int, from first: Int, of batch: PacketBatch, memory mem: GuestMemory,
                       refusing acceptance: OffloadAcceptance?) -> (reserved: Int, broken: Bool) {
        let headerLength = configuration.headerLength
        let table = descriptorTable
        let size = UInt32(mask) &+ 1
        var n = 0
        while n < count {
            let frame = first &+ n
            if let acceptance, !acceptance.accepts(header: batch.header(frame)) { break }
            guard let h = head(at: lastAvail &+ UInt16(truncatingIfNeeded: n)) else { return (n, true) }
            var chain = ReceiveChainWalker(table: table, size: size, head: h)
            let needed = headerLength &+ batch.length(of: frame)
            switch chain.next(memory: mem) {
            case .failure(let e)?:
                fail(e)
                return (n, true)
            case .piece(let buffer, let room)? where room >= needed:
                // SAFETY: n < count <= reservedChainCapacity, the array's capacity (pushWholeFrames' `want`).
                reservedChains[n] = ReservedChain(head: h, buffer: buffer, length: needed)
            case .piece?, nil:
                // Too small for the whole frame: `writeFrame` walks the chain further, or the next ones.
                return (n, false)
            }
            n &+= 1
        }
        return (n, false)
    }

    /// Pass 2: writes the header and the frame into each of the first `count`
    /// reserved chains, frames from `first`. Returns the frames' bytes.
    @inlinable
    func copyWholeFrames<W: GuestWrites>(_ count: Int, from first: Int, of batch: PacketBatch, writes: W) -> UInt64 {
        // The flags byte (lowest on little-endian) keeps only what the driver accepts.
        let flagsMask = 0xFFFF_FFFF_FFFF_FF00 as UInt64 | UInt64(configuration.acceptedHeaderFlags)
        // num_buffers (bytes 10 and 11) is 1: one chain (§5.1.6.4, with or without MRG_RXBUF).
        let oneBuffer = UInt32(1) << 16
        let headerLength = configuration.headerLength
        var bytes: UInt64 = 0
        var i = 0
        while i < count {
            let frame = first &+ i
            // SAFETY: i < count, the chains reserveChains filled (at most reservedChainCapacity).
            let reserved = reservedChains[i]
            let header = batch.header(frame)
            let buffer = reserved.buffer
            // SAFETY: reserveChains translated the buffer with room for headerLength (12, checked by
            // the caller) plus the frame's length; every load and store below stays inside those bytes.
            // The header is stored only where the buffer holds another: a driver recycles its
            // buffers, so most already hold this header, and a line left unwritten stays shared
            // with the driver's CPU, which then reads the header without taking the line from
            // this one (DPDK's vhost does the same). What the guest writes there meanwhile is
            // its own: the value read is only compared.
            let flagsAndGSO = header.loadUnaligned(as: UInt64.self) & flagsMask
            let checksumAndCount = (header.loadUnaligned(fromByteOffset: 8, as: UInt32.self) & 0xFFFF) | oneBuffer
            if buffer.loadUnaligned(as: UInt64.self) != flagsAndGSO {
                buffer.storeBytes(of: flagsAndGSO, as: UInt64.self)
            }
            if buffer.loadUnaligned(fromByteOffset: 8, as: UInt32.self) != checksumAndCount {
                buffer.storeBytes(of: checksumAndCount, toByteOffset: 8, as: UInt32.self)
            }
            var at = buffer + headerLength
            var left = batch.length(of: frame)
            for segment in batch.segments(of: frame) where left > 0 {
                let take = min(left, batch.segmentLength(segment))
                InlineCopy.copy(take, from: batch.segmentBase(segment), to: at)
                at += take
                left &-= take
            }
            writes.written(buffer, count: reserved.length)
            bytes &+= UInt64(batch.length(of: frame))
            i &+= 1
        }
        return bytes
    }

    /// Pass 3: the used entries of the first `count` reserved chains, in
    /// order, and the chains consumed; `push` publishes them with the burst.
    @inlinable
    func useReservedChains(_ count: Int) {
        writeUsedRun(count) {
            // SAFETY: each i < count, the chains reserveChains filled (at most reservedChainCapacity).
            let reserved = reservedChains[$0]
            return UInt64(reserved.head.rawValue) | UInt64(UInt32(truncatingIfNeeded: reserved.length)) << 32
        }
        lastAvail &+= UInt16(truncatingIfNeeded: count)
    }
}
