import CFerry
import Packets
import Ports

// Frames that ask a destination for more than it takes.
//
// A frame's virtio-net header may leave its L4 checksum to the device
// (NEEDS_CSUM) or make it a GSO super-frame of up to 64 KiB. Ports that take
// such frames get them untouched (a TAP, a guest that negotiated the matching
// GUEST_* feature, a packet port with `offloads=on`). For the others:
//   - a GSO frame goes to the port as it is, with this worker's
//     SoftwareSegmenter (`Port.push(queue:from:segmenter:)`): the port cuts it
//     straight into the buffers the segments leave Ferry from (a guest's
//     receive chains, the xdp port's UMEM frames, a packet socket's transmit
//     slots, a vxlan port's send arena), so each segment is copied once, as
//     any frame is;
//   - a partial checksum the port does not take (only a guest without
//     GUEST_CSUM: the xdp, packet and vxlan ports finish checksums while copying) is
//     finished here in a slot of this worker's (`ChecksumCompletion`), and the
//     port gets a reference to the slot among the other frames, in order.
// Each adaptation is counted on the destination's queue (OffloadCounter); a
// frame that cannot be segmented is dropped there with its reason.
extension Worker {
    /// Slots for frames whose checksum the worker finished: one per frame of a batch.
    @usableFromInline static let adaptedSlotCount = 256
    /// A slot holds a frame's virtio-net header and the longest frame any port carries.
    @usableFromInline static let adaptedSlotSize = PacketBatch.headerStride &+ TapPort.bufferSize

    /// Whether frame `f` is a GSO frame that could never be segmented (counted
    /// on the ingress queue with its reason): checked once, where it came in,
    /// so that no destination, passing it on or cutting it, gets a bad one.
    @inlinable
    func isRefusedGSO(_ batch: PacketBatch, _ f: Int, counters: QueueCounters) -> Bool {
        let header = batch.header(f)
        if VirtioNetHeader.gsoType(at: header) == VirtioNetHeader.gsoNone { return false }
        do throws(SegmentationError) {
            _ = try segmenter.layout(of: batch.frameSegments(f), header: VirtioNetHeader(loading: header))
            return false
        } catch {
            counters.dropped(error.dropReason)
            return true
        }
    }

    /// Hands `batch` to port `p`, adapting the frames it cannot take as they are.
    @inlinable
    func transmitAdapting(_ batch: PacketBatch, to p: Int) { transmitAdapting(batch, to: p, port: ports[p]) }

    /// As above, with port `p`'s entry borrowed as an argument (see `forward`).
    @inlinable
    func transmitAdapting(_ batch: PacketBatch, to p: Int, port destination: WorkerPort) {
        let acceptance = destination.port.offloadAcceptance
        let count = batch.count
        var passed = 0
        var f = 0
        while f < count {
            let header = batch.header(f)
            if !acceptance.accepts(header: header) {
                adapt(batch, from: f, to: p, acceptance: acceptance,
                      counters: destination.counters)
                return
            }
            if VirtioNetHeader.gsoType(at: header) != VirtioNetHeader.gsoNone { passed &+= 1 }
            f &+= 1
        }
        if passed > 0 { destination.counters.offloaded(.gsoPassed, passed) }
        transmit(batch, to: p, port: destination, segmenting: false)
    }

    /// The slow path of `transmitAdapting`, from the first frame `first` that needs adapting.
    @usableFromInline
    func adapt(_ batch: PacketBatch, from first: Int, to p: Int, acceptance: OffloadAcceptance,
               counters: QueueCounters) {
        var passed = 0
        var checksumsToFinish = false
        var f = 0
        while f < batch.count {
            let header = batch.header(f)
            let isGSO = VirtioNetHeader.gsoType(at: header) != VirtioNetHeader.gsoNone
            if f < first || acceptance.accepts(header: header) {
                if isGSO { passed &+= 1 }
            } else if !isGSO {
                checksumsToFinish = true
            }
            f &+= 1
        }
        if passed > 0 { counters.offloaded(.gsoPassed, passed) }
        // The usual case: only GSO frames to cut, all of them the port's to cut.
        if !checksumsToFinish {
            transmit(batch, to: p, segmenting: true)
            return
        }
        let out = adapted
        out.reset()
        var sink = SlotSegmentSink(base: adaptedSlots, slotSize: Self.adaptedSlotSize,
                                   slotCount: Self.adaptedSlotCount, headerSize: PacketBatch.headerStride,
                                   lengths: adaptedLengths)
        f = 0
        while f < batch.count {
            let header = batch.header(f)
            if f < first || acceptance.accepts(header: header)
                || VirtioNetHeader.gsoType(at: header) != VirtioNetHeader.gsoNone {
                if out.room == 0 || out.freeSegments < batch.segmentCount(of: f) {
                    flush(out, to: p, sink: &sink)
                }
                out.appendReference(to: f, of: batch, edit: .keep)
                f &+= 1
                continue
            }
            // NEEDS_CSUM for a port that does not take it.
            finishChecksumInSlot(f, of: batch, to: p, out: out, sink: &sink, counters: counters)
            f &+= 1
        }
        if out.count > 0 { transmit(out, to: p, segmenting: true) }
    }

    /// Frame `f`'s partial checksum, which port `p` does not take, finished in
    /// the next slot of `sink`, the slot added to `out` in the frame's place
    /// (both handed over first when full); one too long for a slot, or whose
    /// checksum offsets lie, is dropped with its reason.
    @inlinable
    func finishChecksumInSlot(_ f: Int, of batch: PacketBatch, to p: Int, out: PacketBatch,
                              sink: inout SlotSegmentSink, counters: QueueCounters) {
        if sink.count == sink.slotCount || out.room == 0 { flush(out, to: p, sink: &sink) }
        let frame = batch.frameSegments(f)
        let length = frame.length
        if PacketBatch.headerStride &+ length > Self.adaptedSlotSize {
            counters.dropped(.tooLong)
            return
        }
        let header = batch.header(f)
        let s = sink.count
        let slot = sink.segment(s)
        _ = frame.copy(from: 0, count: length, to: slot)
        guard ChecksumCompletion.complete(frame: slot, length: length, header: header) else {
            counters.dropped(.badChecksumOffset)
            return
        }
        var done = VirtioNetHeader(loading: header)
        done.flags &= ~VirtioNetHeader.needsChecksum
        // SAFETY: s = sink.count < slotCount (flushed above when full) = adaptedSlotCount, the length
        // of adaptedLengths.
        adaptedLengths[s] = length
        sink.endSegment(header: done)
        appendSlot(s, of: sink, token: batch.token(of: f), endpoint: batch.tunnelEndpoint(of: f), to: out)
        counters.offloaded(.checksumsCompleted)
    }

    /// Adds slot `s` of `sink` (header, then frame) to `out` as a one-segment frame.
    @inlinable
    func appendSlot(_ s: Int, of sink: SlotSegmentSink, token: UInt32, endpoint: UInt16, to out: PacketBatch) {
        // SAFETY: s is a slot the caller just filled (< adaptedSlotCount, adaptedLengths' length), and
        // out has room (the callers flush it when full).
        let i = out.count
        out.setTunnelEndpoint(i, endpoint)
        out.append(base: sink.segment(s), length: UInt32(truncatingIfNeeded: adaptedLengths[s]), token: token)
        out.setHeader(i, copying: sink.header(s))
    }

    /// Hands what `out` holds over and makes it and the slots empty again.
    @inlinable
    func flush(_ out: PacketBatch, to p: Int, sink: inout SlotSegmentSink) {
        if out.count > 0 { transmit(out, to: p, segmenting: true) }
        out.reset()
        sink.reset()
    }
}
