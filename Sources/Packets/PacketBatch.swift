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
///
/// The batch invariant, which the `SAFETY:` comments of the accessors lean on:
/// `count <= capacity` and `segmentCount <= segmentCapacity` (a source checks
/// `room`/`isFull` and `freeSegments` before it appends); frame `f < count` has its
/// segments in `firstSegments[f] ..< firstSegments[f] + segmentCounts[f]`, inside
/// `0 ..< segmentCount`; and each segment's base points at `segmentLengths[s]`
/// readable bytes the source lends until the burst is over. Callers pass frame
/// indexes below `count` (they walk `0 ..< count`) and segment indexes from
/// `segments(of:)`.
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

    // The storage, struct-of-arrays, allocated once: read and written from other modules
    // only through the @inlinable accessors below, which compile to the same loads and stores.
    /// Frame length in bytes, without the virtio-net header.
    @usableFromInline let lengths: UnsafeMutablePointer<UInt32>
    /// Index of the frame's first segment.
    @usableFromInline let firstSegments: UnsafeMutablePointer<UInt32>
    /// Number of segments of the frame.
    @usableFromInline let segmentCounts: UnsafeMutablePointer<UInt16>
    /// The source's handle for the frame (a descriptor head, a pool index).
    @usableFromInline let tokens: UnsafeMutablePointer<UInt32>
    /// The frame's virtio-net header, `headerStride` bytes apart.
    @usableFromInline let headers: UnsafeMutableRawPointer
    /// The remote tunnel endpoint (a vxlan port's VTEP number) of the frame:
    /// the one it came from, as a tunnel port's pull says; the one it goes to
    /// once the switch decided (0: every one). Only tunnel ports read it.
    @usableFromInline let tunnelEndpoints: UnsafeMutablePointer<UInt16>

    @usableFromInline let segmentBases: UnsafeMutablePointer<UnsafeMutableRawPointer>
    @usableFromInline let segmentLengths: UnsafeMutablePointer<UInt32>

    public init(capacity: Int = 256, segmentsPerFrame: Int = 4) {
        precondition(capacity > 0 && capacity <= 4096)
        self.capacity = capacity
        self.segmentCapacity = capacity * segmentsPerFrame
        self.limit = capacity
        lengths = .allocate(capacity: capacity)
        firstSegments = .allocate(capacity: capacity)
        segmentCounts = .allocate(capacity: capacity)
        tokens = .allocate(capacity: capacity)
        tunnelEndpoints = .allocate(capacity: capacity)
        // SAFETY: the fills cover exactly what was allocated: capacity endpoints, capacity *
        // headerStride header bytes.
        tunnelEndpoints.initialize(repeating: 0, count: capacity)
        headers = .allocate(byteCount: capacity * Self.headerStride, alignment: 16)
        headers.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * Self.headerStride)
        segmentBases = .allocate(capacity: segmentCapacity)
        segmentLengths = .allocate(capacity: segmentCapacity)
    }

    deinit {
        lengths.deallocate()
        firstSegments.deallocate()
        segmentCounts.deallocate()
        tokens.deallocate()
        tunnelEndpoints.deallocate()
        headers.deallocate()
        segmentBases.deallocate()
        segmentLengths.deallocate()
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

    // SAFETY: frame < capacity (a frame of the batch, or the next one a source appends after checking
    // room), so the headerStride bytes lie in the capacity * headerStride allocated.
    @inlinable
    public func header(_ frame: Int) -> UnsafeMutableRawPointer {
        headers + frame &* Self.headerStride
    }

    /// Zeroes frame `frame`'s virtio-net header: nothing asked, nothing known (a frame from
    /// a wire without offloads); `frame` may be the next one a source appends.
    @inlinable
    public func clearHeader(_ frame: Int) {
        // SAFETY: frame <= count, and a source names count only after checking room: below
        // capacity, so the headerStride-byte slot holds the 12 bytes zeroed.
        let h = header(frame)
        h.storeBytes(of: 0, as: UInt64.self)
        h.storeBytes(of: 0, toByteOffset: 8, as: UInt32.self)
    }

    /// Sets frame `frame`'s virtio-net header to the `headerSize` bytes at `header`.
    @inlinable
    public func setHeader(_ frame: Int, copying header: UnsafeRawPointer) {
        // SAFETY: frame < capacity (the caller appended it), so the destination is its
        // headerStride-byte slot; the source is a header of at least headerSize bytes (the caller's).
        self.header(frame).copyMemory(from: header, byteCount: Self.headerSize)
    }

    /// Appends a one-segment frame; the caller checked `isFull` and `freeSegments`.
    @inlinable
    public func append(base: UnsafeMutableRawPointer, length len: UInt32, token tok: UInt32) {
        // SAFETY: the caller checked `isFull` (count < limit <= capacity) and `freeSegments`
        // (segmentCount < segmentCapacity): both indexes lie in their arrays.
        let i = count
        let s = segmentCount
        segmentBases[s] = base
        segmentLengths[s] = len
        firstSegments[i] = UInt32(truncatingIfNeeded: s)
        segmentCounts[i] = 1
        lengths[i] = len
        tokens[i] = tok
        segmentCount = s &+ 1
        count = i &+ 1
    }

    /// Total bytes of all frames, for byte counters.
    @inlinable
    public var totalBytes: UInt64 {
        // SAFETY: i < count <= capacity, the batch invariant.
        var sum: UInt64 = 0
        var i = 0
        while i < count { sum &+= UInt64(lengths[i]); i &+= 1 }
        return sum
    }

    // MARK: - Frames and segments

    /// Frame `frame`'s length in bytes, without the virtio-net header.
    // SAFETY: frame < count <= capacity (the batch invariant, in the type's comment).
    @inlinable
    public func length(of frame: Int) -> Int { Int(lengths[frame]) }

    /// The indexes of frame `frame`'s segments (for `segmentBase` and `segmentLength`).
    @inlinable
    public func segments(of frame: Int) -> Range<Int> {
        // SAFETY: frame < count <= capacity (the batch invariant).
        let first = Int(firstSegments[frame])
        return Range(uncheckedBounds: (first, first &+ Int(segmentCounts[frame])))
    }

    /// How many segments frame `frame` has.
    // SAFETY: frame < count <= capacity (the batch invariant).
    @inlinable
    public func segmentCount(of frame: Int) -> Int { Int(segmentCounts[frame]) }

    /// The source's handle for frame `frame`.
    // SAFETY: frame < count <= capacity (the batch invariant).
    @inlinable
    public func token(of frame: Int) -> UInt32 { tokens[frame] }

    /// Frame `frame`'s tunnel endpoint (see `tunnelEndpoints`).
    // SAFETY: frame < count <= capacity (the batch invariant).
    @inlinable
    public func tunnelEndpoint(of frame: Int) -> UInt16 { tunnelEndpoints[frame] }

    /// Sets frame `frame`'s tunnel endpoint; `frame` may be the next one a source appends.
    // SAFETY: frame <= count, and a source names count only after checking room: below capacity.
    @inlinable
    public func setTunnelEndpoint(_ frame: Int, _ endpoint: UInt16) { tunnelEndpoints[frame] = endpoint }

    // SAFETY: segment comes from `segments(of:)`: below segmentCount <= segmentCapacity (the batch
    // invariant).
    @inlinable
    public func segmentBase(_ segment: Int) -> UnsafeMutableRawPointer { segmentBases[segment] }

    // SAFETY: as segmentBase: segment < segmentCount <= segmentCapacity.
    @inlinable
    public func segmentLength(_ segment: Int) -> Int { Int(segmentLengths[segment]) }

    /// Writes segment `segment` of the frame a source is building, from `segmentCount` on
    /// (the caller checked it is below `segmentCapacity`); `appendFrame` makes it part of the batch.
    @inlinable
    public func setSegment(_ segment: Int, base: UnsafeMutableRawPointer, length: UInt32) {
        // SAFETY: the caller checked segment < segmentCapacity (freeSegments before it began the
        // frame).
        segmentBases[segment] = base
        segmentLengths[segment] = length
    }

    /// Appends the frame of `length` bytes whose segments, written with `setSegment`, are
    /// `segments` (starting at `segmentCount`); the caller checked `isFull`. Its token is
    /// left as it was: a source that releases frames by token gives one (`appendFrame(segments:length:token:)`).
    @inlinable
    public func appendFrame(segments: Range<Int>, length: UInt32) {
        // SAFETY: the caller checked isFull: count < limit <= capacity; segments lie below
        // segmentCapacity (setSegment's check).
        let i = count
        firstSegments[i] = UInt32(truncatingIfNeeded: segments.lowerBound)
        segmentCounts[i] = UInt16(truncatingIfNeeded: segments.count)
        lengths[i] = length
        segmentCount = segments.upperBound
        count = i &+ 1
    }

    @inlinable
    public func appendFrame(segments: Range<Int>, length: UInt32, token: UInt32) {
        // SAFETY: the caller checked isFull: count < capacity.
        tokens[count] = token
        appendFrame(segments: segments, length: length)
    }
}
