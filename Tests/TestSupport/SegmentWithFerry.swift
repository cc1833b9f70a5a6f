import Packets

/// Runs Ferry's software segmentation on `frame`, held in ranges cut at
/// `cuts` (as a guest's scattered TX buffers would hold it), into slots of
/// `slotSize`; returns the outcome and each segment's virtio-net header and bytes.
public func segmentWithFerry(_ frame: GSOTestFrame, checksum: SoftwareSegmenter.Checksum, cuts: [Int] = [],
                             slots: Int = 64, slotSize: Int = 9216, segmenter: SoftwareSegmenter = SoftwareSegmenter())
    throws(SegmentationError) -> (SoftwareSegmenter.Outcome, [(VirtioNetHeader, [UInt8])])
{
    let arena = FrameArena()
    let batch = PacketBatch(capacity: 1, segmentsPerFrame: cuts.count + 1)
    arena.append(frame.bytes, cuts: cuts, to: batch)
    let memory = UnsafeMutableRawPointer.allocate(byteCount: slots * slotSize, alignment: 64)
    defer { memory.deallocate() }
    let lengths = UnsafeMutablePointer<Int>.allocate(capacity: slots)
    defer { lengths.deallocate() }
    var sink = SlotSegmentSink(base: memory, slotSize: slotSize, slotCount: slots, headerSize: 12, lengths: lengths)
    let outcome = try segmenter.segment(batch.frameSegments(0), header: frame.header, checksum: checksum, into: &sink)
    var out: [(VirtioNetHeader, [UInt8])] = []
    for i in 0..<sink.count {
        let slot = memory + i * slotSize
        out.append((VirtioNetHeader(loading: slot),
                    Array(UnsafeRawBufferPointer(start: slot + 12, count: lengths[i]))))
    }
    return (outcome, out)
}
