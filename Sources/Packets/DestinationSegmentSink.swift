/// A sink over a port's own transmit buffers (a guest's receive chains, the
/// xdp port's UMEM frames, a packet socket's transmit slots): software
/// segmentation writes each segment straight to where it leaves Ferry, and the
/// sink says why it refused one when it runs out.
public protocol DestinationSegmentSink: SegmentSink {
    /// Why the last `beginSegment` that returned false refused the segment
    /// (`no_rx_buffer`, `tx_full`, `rx_buffer_too_small`, `device_broken`...).
    var shortfall: DropReason { get }
}

extension SoftwareSegmenter {
    /// The most segments one frame is cut into: a 64 KiB frame at the
    /// smallest IPv4 MSS (536) is 123. A smaller gso_size would make a
    /// flood of tiny frames out of one, and is dropped as `too_many_segments`.
    public static let maxSegmentsPerFrame = 256

    /// Segments GSO frame `frame`, whose virtio-net header is at `header`,
    /// into `sink`, and counts it on the destination's `counters`: the frame
    /// (`segmented_frames`), the segments written (`segments_out`), and every
    /// segment that did not go as a drop with its reason. A segment longer than
    /// `untaggedLimit` (the port's MTU plus the Ethernet header; 4 more for a
    /// tagged frame) drops the whole frame as `too_long`. The frame was checked
    /// where it came in (`Worker.isRefusedGSO`), but a guest may have rewritten
    /// it since, so a refusal now is counted with its reason too.
    /// Returns the segments written.
    @inlinable
    @discardableResult
    public func transmit<Sink: DestinationSegmentSink>(_ frame: FrameSegments, header: UnsafeRawPointer,
                                                       checksum: Checksum, untaggedLimit: Int, into sink: inout Sink,
                                                       counters: QueueCounters) -> Int {
        let layout: GSOFrameLayout
        do throws(SegmentationError) {
            layout = try self.layout(of: frame, header: VirtioNetHeader(loading: header))
        } catch {
            counters.dropped(error.dropReason)
            return 0
        }
        let segments = layout.segmentCount
        if segments > Self.maxSegmentsPerFrame {
            counters.dropped(.tooManySegments)
            return 0
        }
        let tagged = layout.networkOffset > Ethernet.headerSize
        if layout.headerLength &+ min(layout.segmentSize, layout.payloadLength)
            > untaggedLimit &+ (tagged ? Ethernet.tagSize : 0) {
            counters.dropped(.tooLong, segments)
            return 0
        }
        let outcome = segment(frame, layout: layout, checksum: checksum, into: &sink)
        counters.offloaded(.segmentedFrames)
        if outcome.written > 0 { counters.offloaded(.segmentsOut, outcome.written) }
        if !outcome.isComplete { counters.dropped(sink.shortfall, outcome.segmentCount &- outcome.written) }
        return outcome.written
    }
}
