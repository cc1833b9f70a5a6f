import CFerry
import Glibc
import Packets

/// What became of one frame offered to a device-writable (RX) queue.
@usableFromInline
enum PushedFrame {
    case delivered
    case dropped(DropReason)
    case broken
}

extension SplitVirtqueue {
    /// Copies every frame of `batch` into the guest's RX buffers (one copy,
    /// straight from wherever the frame lives) and publishes them with one
    /// used-index store. With mergeable buffers a frame spans as many chains
    /// as it needs and its header says how many (num_buffers); without, it
    /// must fit one chain. Frames that find no room are dropped and counted.
    ///
    /// With a `segmenter`, every frame that `acceptance` (what the driver
    /// negotiated) refuses is a GSO frame the worker left to this queue: it is
    /// cut straight into the chains, segment by segment (`writeSegments`), its
    /// checksums left partial when the driver takes that. Drops of such a frame
    /// are counted per segment, so it is tried even when no chain is left.
    @inlinable
    public func push(from batch: PacketBatch, counters: QueueCounters, segmenter: SoftwareSegmenter? = nil,
                     acceptance: OffloadAcceptance = .everything) {
        let total = batch.count
        guard total > 0 else { return }
        guard isRunning, let available = availableCount() else {
            counters.dropped(error == nil ? .notReady : .deviceBroken, total)
            return
        }
        guard let mem = memory else { return }
        var availLeft = available
        let usedBefore = pendingUsed
        var sent = 0
        var bytes: UInt64 = 0
        let checksum: SoftwareSegmenter.Checksum = acceptance.contains(.partialChecksum) ? .partial : .complete
        var frame = 0
        while frame < total {
            if let segmenter, !acceptance.accepts(header: batch.header(frame)) {
                let result = writeSegments(frame, of: batch, memory: mem, availLeft: availLeft, segmenter: segmenter,
                                           checksum: checksum, counters: counters)
                availLeft = result.availLeft
                sent &+= result.sent
                bytes &+= result.bytes
                frame &+= 1
                if result.broken {
                    counters.dropped(.deviceBroken, total &- frame)
                    break
                }
                continue
            }
            if availLeft == 0 {
                if segmenter == nil {
                    counters.dropped(.noRxBuffer, total &- frame)
                    break
                }
                counters.dropped(.noRxBuffer)
                frame &+= 1
                continue
            }
            let chainsBefore = pendingUsed
            switch writeFrame(frame, of: batch, memory: mem, availLeft: availLeft) {
            case .delivered:
                sent &+= 1
                bytes &+= UInt64(batch.length(of: frame))
                availLeft &-= Int(pendingUsed &- chainsBefore)
            case .dropped(let reason):
                counters.dropped(reason)
            case .broken:
                counters.dropped(.deviceBroken, total &- frame)
                frame = total
                continue
            }
            frame &+= 1
        }
        if sent > 0 { counters.sent(packets: sent, bytes: bytes) }
        let n = pendingUsed &- usedBefore
        pendingUsed = usedBefore
        if isRunning { publishUsed(n) }
    }

    /// Writes one frame into as many chains as it needs; on a shortfall takes
    /// nothing (the guest's buffers stay available for the next frame).
    @inlinable
    func writeFrame(_ frame: Int, of batch: PacketBatch, memory mem: GuestMemory, availLeft: Int) -> PushedFrame {
        let hdrLen = headerLength
        let header = batch.header(frame)
        var headerDone = 0
        let frameSegments = batch.segments(of: frame)
        var seg = frameSegments.lowerBound
        var srcPtr = frameSegments.isEmpty ? header : batch.segmentBase(seg)
        var srcLeft = frameSegments.isEmpty ? 0 : batch.segmentLength(seg)
        var remaining = hdrLen &+ batch.length(of: frame)
        // Where num_buffers (header bytes 10 and 11) landed in guest memory.
        var numBuffersLow: UnsafeMutableRawPointer? = nil
        var numBuffersHigh: UnsafeMutableRawPointer? = nil
        var chains = 0
        let startAvail = lastAvail
        let startPending = pendingUsed
        while remaining > 0 {
            // Checked first: without mergeable buffers a frame that outgrew its
            // chain is too big, however many chains are left behind it.
            if chains > 0 && !mergeableBuffers {
                lastAvail = startAvail
                pendingUsed = startPending
                return .dropped(.rxBufferTooSmall)
            }
            if chains == availLeft {
                lastAvail = startAvail
                pendingUsed = startPending
                return .dropped(.noRxBuffer)
            }
            guard let h = head(at: lastAvail) else { return .broken }
            var chain = ReceiveChainWalker(table: desc.unsafelyUnwrapped, size: UInt32(mask) &+ 1, head: h)
            var written = 0
            while remaining > 0, let step = chain.next(memory: mem) {
                var dst: UnsafeMutableRawPointer
                var room: Int
                switch step {
                case .failure(let e):
                    fail(e)
                    return .broken
                case .piece(let p, let length):
                    dst = p
                    room = length
                }
                // The header first, then the frame's segments, in as many pieces as the buffers need.
                if headerDone == 0 && hdrLen == 12 && room >= 12 {
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
                    if headerDone < hdrLen {
                        let take = min(room, hdrLen &- headerDone)
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
                    if srcLeft == 0 {
                        seg &+= 1
                        srcPtr = batch.segmentBase(seg)
                        srcLeft = batch.segmentLength(seg)
                    }
                    let take = min(room, srcLeft)
                    memcpy(dst, srcPtr, take)
                    srcPtr += take
                    srcLeft &-= take
                    dst += take
                    room &-= take
                    remaining &-= take
                    written &+= take
                }
            }
            writeUsed(slot: usedIndex &+ pendingUsed, id: h, length: UInt32(truncatingIfNeeded: written))
            pendingUsed &+= 1
            lastAvail &+= 1
            chains &+= 1
        }
        if hdrLen >= 12 {
            // §5.1.6.4: num_buffers is the number of chains used, 1 without MRG_RXBUF.
            let n = UInt16(truncatingIfNeeded: chains)
            numBuffersLow?.storeBytes(of: UInt8(truncatingIfNeeded: n), as: UInt8.self)
            numBuffersHigh?.storeBytes(of: UInt8(truncatingIfNeeded: n >> 8), as: UInt8.self)
        }
        return .delivered
    }
}
