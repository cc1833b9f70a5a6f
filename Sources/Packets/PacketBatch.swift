/// A burst of frames on its way from one port to another.
///
/// Frames are not copied into the batch: each is a list of segments that point
/// at wherever the frame lives (a guest's TX buffers, a generator's template,
/// a pool buffer), plus the 12-byte virtio-net header that travels with it
/// unchanged (checksum and GSO metadata). The source port keeps a `token` per
/// frame to give the buffers back once the destination has copied them.
///
/// Storage is allocated once; filling and draining a batch allocates nothing.
/// Struct-of-arrays so the per-frame loops touch only what they read.
public final class PacketBatch {
    public static let headerSize = 12
    public static let headerStride = 16

    public let capacity: Int
    public let segmentCapacity: Int

    /// Frames in the batch.
    public var count: Int = 0
    /// How many frames a source may put in this burst (at most `capacity`);
    /// lowered when the destination has room for fewer.
    public var limit: Int
    /// Segments used by the frames so far.
    public var segmentCount: Int = 0

    /// Frame length in bytes, without the virtio-net header.
    public let length: UnsafeMutablePointer<UInt32>
    /// Index of the frame's first segment.
    public let firstSegment: UnsafeMutablePointer<UInt32>
    /// Number of segments of the frame.
    public let segments: UnsafeMutablePointer<UInt16>
    /// The source's handle for the frame (a descriptor head, a pool index).
    public let token: UnsafeMutablePointer<UInt32>
    /// The frame's virtio-net header, `headerStride` bytes apart.
    public let headers: UnsafeMutableRawPointer

    public let segmentBase: UnsafeMutablePointer<UnsafeMutableRawPointer>
    public let segmentLength: UnsafeMutablePointer<UInt32>

    public init(capacity: Int = 256, segmentsPerFrame: Int = 4) {
        precondition(capacity > 0 && capacity <= 4096)
        self.capacity = capacity
        self.segmentCapacity = capacity * segmentsPerFrame
        self.limit = capacity
        length = .allocate(capacity: capacity)
        firstSegment = .allocate(capacity: capacity)
        segments = .allocate(capacity: capacity)
        token = .allocate(capacity: capacity)
        headers = .allocate(byteCount: capacity * Self.headerStride, alignment: 16)
        headers.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * Self.headerStride)
        segmentBase = .allocate(capacity: segmentCapacity)
        segmentLength = .allocate(capacity: segmentCapacity)
    }

    deinit {
        length.deallocate()
        firstSegment.deallocate()
        segments.deallocate()
        token.deallocate()
        headers.deallocate()
        segmentBase.deallocate()
        segmentLength.deallocate()
    }

    @inlinable
    public func reset() {
        count = 0
        segmentCount = 0
        limit = capacity
    }

    @inlinable
    public var isFull: Bool { count >= limit }

    /// Frames a source may still add in this burst.
    @inlinable
    public var room: Int { limit > count ? limit &- count : 0 }

    @inlinable
    public var freeSegments: Int { segmentCapacity &- segmentCount }

    @inlinable
    public func header(_ frame: Int) -> UnsafeMutableRawPointer {
        headers + frame &* Self.headerStride
    }

    /// Appends a one-segment frame; the caller checked `isFull` and `freeSegments`.
    @inlinable
    public func append(base: UnsafeMutableRawPointer, length len: UInt32, token tok: UInt32) {
        let i = count
        let s = segmentCount
        segmentBase[s] = base
        segmentLength[s] = len
        firstSegment[i] = UInt32(truncatingIfNeeded: s)
        segments[i] = 1
        length[i] = len
        token[i] = tok
        segmentCount = s &+ 1
        count = i &+ 1
    }

    /// Total bytes of all frames, for byte counters.
    @inlinable
    public var totalBytes: UInt64 {
        var sum: UInt64 = 0
        var i = 0
        while i < count { sum &+= UInt64(length[i]); i &+= 1 }
        return sum
    }
}
