import CFerry
import Packets

extension PackedVirtqueue {
    /// Copies every frame of `batch` into the guest's RX buffers and marks the
    /// chains used together, as `SplitVirtqueue.push` does: with mergeable
    /// buffers a frame spans as many chains as it needs (num_buffers says how
    /// many), without it must fit one. Frames that find no room are dropped and counted.
    ///
    /// With a `segmenter`, every frame that `acceptance` (what the driver
    /// negotiated) refuses is a GSO frame the worker left to this queue: it is
    /// cut straight into the chains (`writeSegments`), its drops counted per
    /// segment, so it is tried even when no chain is left.
    ///
    /// With the dirty log on, every byte written marks its page (the choice is
    /// made once per burst), and the used descriptors theirs when published.
    ///
    /// Four frames at a time go into four single-buffer descriptors of one
    /// cache line when everything allows it (`pushBatch`); the rest, and
    /// whatever a batch refuses, one chain at a time (`writeFrame`).
    @inlinable
    public func push(from batch: PacketBatch, counters: QueueCounters, segmenter: SoftwareSegmenter? = nil,
                     acceptance: OffloadAcceptance = .everything) {
        pushChoosingWrites(from: batch, counters: counters, segmenter: segmenter, acceptance: acceptance)
    }

    @inlinable
    func push<W: GuestWrites>(from batch: PacketBatch, counters: QueueCounters, segmenter: SoftwareSegmenter?,
                              acceptance: OffloadAcceptance, writes: W) {
        let total = batch.count
        guard total > 0 else { return }
        guard isRunning, let mem = memory else {
            counters.dropped(error == nil ? .notReady : .deviceBroken, total)
            return
        }
        var sent = 0
        var bytes: UInt64 = 0
        let checksum: SoftwareSegmenter.Checksum = acceptance.contains(.partialChecksum) ? .partial : .complete
        var frame = 0
        while frame < total {
            if total &- frame >= Self.pushBatchSize,
               pushBatch(frame, of: batch, memory: mem, segmenting: segmenter != nil, acceptance: acceptance,
                         writes: writes) {
                sent &+= Self.pushBatchSize
                bytes &+= UInt64(batch.length(of: frame) &+ batch.length(of: frame &+ 1)
                                 &+ batch.length(of: frame &+ 2) &+ batch.length(of: frame &+ 3))
                frame &+= Self.pushBatchSize
                continue
            }
            if let segmenter, !acceptance.accepts(header: batch.header(frame)) {
                let running = writeSegments(frame, of: batch, memory: mem, segmenter: segmenter,
                                            checksum: checksum, counters: counters, writes: writes,
                                            sent: &sent, bytes: &bytes)
                frame &+= 1
                if !running {
                    counters.dropped(.deviceBroken, total &- frame)
                    break
                }
                continue
            }
            guard let flags = headFlags() else {
                // Every frame after it finds no room either, but a GSO frame counts its segments.
                let missed = segmenter == nil ? total &- frame : 1
                counters.dropped(.noRxBuffer, missed)
                frame &+= missed
                continue
            }
            switch writeFrame(frame, of: batch, headFlags: flags, memory: mem, writes: writes) {
            case .delivered:
                sent &+= 1
                bytes &+= UInt64(batch.length(of: frame))
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
        if isRunning { publishUsed() }
    }

    /// Writes one frame into as many chains as it needs, the first of which has
    /// `headFlags`; on a shortfall takes nothing (the chains stay available).
    @inlinable
    func writeFrame<W: GuestWrites>(_ frame: Int, of batch: PacketBatch, headFlags firstFlags: UInt16,
                                    memory mem: GuestMemory, writes: W) -> PushedFrame {
        var copy = FrameCopy(frame: frame, of: batch, headerLength: configuration.headerLength,
                             acceptedHeaderFlags: configuration.acceptedHeaderFlags)
        var chains = 0
        let start = (place: avail, pending: pendingCount, inFlight: inFlight)
        var flags = firstFlags
        while !copy.isDone {
            if chains > 0 {
                // Checked first: without mergeable buffers a frame that outgrew its
                // chain is too big, however many chains are left behind it.
                var shortfall: DropReason? = configuration.mergeableBuffers ? nil : .rxBufferTooSmall
                if shortfall == nil {
                    if let next = headFlags() { flags = next } else { shortfall = .noRxBuffer }
                }
                if let shortfall {
                    avail = start.place
                    pendingCount = start.pending
                    inFlight = start.inFlight
                    return .dropped(shortfall)
                }
            }
            var walker = ReceiveChainWalker(chain(headFlags: flags))
            let written: Int
            switch copy.fill(&walker, from: batch, memory: mem, writes: writes) {
            case .failure(let e):
                fail(e)
                return .broken
            case .success(let n):
                written = n
            }
            // The frame may end before the chain does: the rest of it is this chain's still.
            if let e = walker.descriptors.skipRest() {
                fail(e)
                return .broken
            }
            take(walker.descriptors, written: written)
            chains &+= 1
        }
        copy.setNumBuffers(chains, writes: writes)
        return .delivered
    }
}

extension PackedVirtqueue: GuestReceiveQueue {}
