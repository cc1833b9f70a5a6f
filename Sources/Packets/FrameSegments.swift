/// One frame as the scattered byte ranges that hold it (a guest's TX buffers,
/// a tag from a table, a read buffer): what software segmentation reads.
public struct FrameSegments {
    public let bases: UnsafePointer<UnsafeMutableRawPointer>
    public let lengths: UnsafePointer<UInt32>
    public let count: Int
    /// The frame's length; the ranges may hold more (the rest is not part of the frame).
    public let length: Int

    @inlinable
    public init(bases: UnsafePointer<UnsafeMutableRawPointer>, lengths: UnsafePointer<UInt32>, count: Int,
                length: Int) {
        self.bases = bases
        self.lengths = lengths
        self.count = count
        self.length = length
    }

    /// Copies bytes `[from, from + count)` of the frame to `destination`;
    /// returns how many there were (fewer when the ranges end first).
    @inlinable
    public func copy(from start: Int, count wanted: Int, to destination: UnsafeMutableRawPointer) -> Int {
        // SAFETY: s < count, the ranges this value was made with; `from` < len (the segment reaches
        // past start) and piece <= len - from, so each read stays inside its range; the destination
        // takes `wanted` bytes (the caller's buffer), and copied never passes wantedEnd <= wanted.
        var skipped = 0
        var copied = 0
        var s = 0
        let wantedEnd = min(wanted, length &- start)
        while s < count && copied < wantedEnd {
            let len = Int(lengths[s])
            if skipped &+ len <= start {
                skipped &+= len
            } else {
                let from = max(0, start &- skipped)
                let piece = min(len &- from, wantedEnd &- copied)
                (destination + copied).copyMemory(from: bases[s] + from, byteCount: piece)
                copied &+= piece
                skipped &+= len
            }
            s &+= 1
        }
        return copied
    }
}

extension PacketBatch {
    /// Frame `frame` of the batch as its scattered ranges.
    @inlinable
    public func frameSegments(_ frame: Int) -> FrameSegments {
        // SAFETY: frame < count, and its segments lie below segmentCount (the batch invariant).
        let first = Int(firstSegments[frame])
        return FrameSegments(bases: segmentBases + first, lengths: segmentLengths + first,
                             count: Int(segmentCounts[frame]), length: Int(lengths[frame]))
    }
}
