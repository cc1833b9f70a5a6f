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
    ///
    /// With the dirty log on, every byte written marks its page, whole frames
    /// and segments alike (the choice is made once per burst: with it off, no
    /// write pays for it).
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
        // Frames that fit one chain's first buffer go in runs (SplitVirtqueue+WholeFrames.swift);
        // the loop below takes the frame that ends a run, then tries a run again.
        let wholeFrames = configuration.headerLength == PacketBatch.headerSize
        let refusing: OffloadAcceptance? = segmenter == nil ? nil : acceptance
        var frame = 0
        while frame < total {
            if wholeFrames && availLeft > 0 {
                let run = pushWholeFrames(from: frame, of: batch, memory: mem, availLeft: availLeft,
                                          refusing: refusing, writes: writes)
                frame &+= run.frames
                availLeft &-= run.frames
                sent &+= run.frames
                bytes &+= run.bytes
                if run.broken {
                    counters.dropped(.deviceBroken, total &- frame)
                    break
                }
                if frame == total { break }
            }
            if let segmenter, !acceptance.accepts(header: batch.header(frame)) {
                let running = writeSegments(frame, of: batch, memory: mem, availLeft: &availLeft,
                                            segmenter: segmenter, checksum: checksum, counters: counters,
                                            writes: writes, sent: &sent, bytes: &bytes)
                frame &+= 1
                if !running {
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
            switch writeFrame(frame, of: batch, memory: mem, availLeft: availLeft, writes: writes) {
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
    /// nothing (the guest's buffers stay available for the next frame, and
    /// what was written into them is not the guest's to read: unmarked).
    @inlinable
    func writeFrame<W: GuestWrites>(_ frame: Int, of batch: PacketBatch, memory mem: GuestMemory, availLeft: Int,
                                    writes: W) -> PushedFrame {
        var copy = FrameCopy(frame: frame, of: batch, headerLength: configuration.headerLength,
                             acceptedHeaderFlags: configuration.acceptedHeaderFlags)
        var chains = 0
        let startAvail = lastAvail
        let startPending = pendingUsed
        while !copy.isDone {
            // Checked first: without mergeable buffers a frame that outgrew its
            // chain is too big, however many chains are left behind it.
            if chains > 0 && !configuration.mergeableBuffers {
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
            var chain = ReceiveChainWalker(table: descriptorTable, size: UInt32(mask) &+ 1, head: h)
            let written: Int
            switch copy.fill(&chain, from: batch, memory: mem, writes: writes) {
            case .failure(let e):
                fail(e)
                return .broken
            case .success(let n):
                written = n
            }
            writeUsed(at: usedIndex &+ pendingUsed, id: h, length: UInt32(truncatingIfNeeded: written))
            pendingUsed &+= 1
            lastAvail &+= 1
            chains &+= 1
        }
        copy.setNumBuffers(chains, writes: writes)
        return .delivered
    }
}

extension SplitVirtqueue: GuestReceiveQueue {}
