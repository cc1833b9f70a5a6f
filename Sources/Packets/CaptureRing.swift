import CFerry
import Synchronization

/// Which way a captured frame went, seen from the port: received by Ferry from
/// the port (rx) or handed by Ferry to the port (tx).
public enum CaptureDirection: UInt8, Sendable, CaseIterable {
    case receive = 0
    case transmit = 1

    public var name: String { self == .receive ? "rx" : "tx" }
}

/// A copy of one frame in a capture ring, as the control thread reads it.
/// `bytes` points into the ring and is valid only inside `drain`'s closure.
public struct CapturedFrame {
    public let port: UInt16
    public let direction: CaptureDirection
    /// Wall-clock time the worker took for the frame's burst, in microseconds since the epoch.
    public let microseconds: UInt64
    /// The frame's length on the wire; `bytes` may hold fewer (the snap length).
    public let originalLength: Int
    public let bytes: UnsafeRawBufferPointer
}

/// A worker's copies of the frames being captured, on their way to the
/// control thread: a single-producer single-consumer ring of variable-length
/// records in one block allocated up front.
///
/// The worker appends (never blocks, never allocates: a record that does not
/// fit is counted as dropped for its port and direction and forgotten, so a
/// slow capture never holds back forwarding); the control thread drains.
/// `tail` and `head` are free-running byte counts; each side stores its own
/// with release and loads the other's with acquire, as in io_uring's rings.
///
/// A record is a 24-byte header then the bytes, padded to 8:
/// `recordLength u32, port u16, kind u8, 0 u8, originalLength u32,
/// capturedLength u32, microseconds u64` (host order: it never leaves the
/// process). A record never wraps: when the end of the block is too close,
/// the producer fills it with a padding record (kind 0xFF) and starts over.
public final class CaptureRing: @unchecked Sendable {
    public static let headerSize = 24
    @usableFromInline static let paddingKind: UInt8 = 0xFF
    /// 4 MiB: some 60 frames of 64 KiB or 2700 of 1500 bytes between two drains
    /// (the control thread drains every few milliseconds while capturing). The
    /// pages are touched only when a capture writes them.
    public static let defaultCapacity = 4 << 20
    /// Longest snap length a capture may ask for (tcpdump's default, 262144, is more
    /// than any frame Ferry moves; 65535 is the classic limit and the default).
    public static let maxSnapLength = 65535

    public let capacity: Int
    @usableFromInline let storage: UnsafeMutableRawPointer
    @usableFromInline let tail = Atomic<UInt64>(0)
    @usableFromInline let head = Atomic<UInt64>(0)
    /// Frames that found the ring full, per port and direction (index port * 2 + direction).
    @usableFromInline let drops: UnsafeMutablePointer<UInt64>
    @usableFromInline let portLimit: Int

    /// `capacity`: a power of two, at least room for one largest record.
    public init(capacity: Int = CaptureRing.defaultCapacity, ports: Int = 64) {
        precondition(capacity.nonzeroBitCount == 1 && capacity >= Self.headerSize + Self.maxSnapLength + 8)
        self.capacity = capacity
        storage = .allocate(byteCount: capacity, alignment: 64)
        portLimit = ports
        // SAFETY: the fill covers exactly the ports * 2 counters just allocated.
        drops = .allocate(capacity: ports * 2)
        drops.initialize(repeating: 0, count: ports * 2)
    }

    deinit {
        storage.deallocate()
        drops.deallocate()
    }

    /// Frames of `port` going `direction` dropped because the ring was full.
    public func dropped(port: UInt16, direction: CaptureDirection) -> UInt64 {
        guard Int(port) < portLimit else { return 0 }
        // SAFETY: port < portLimit (the guard above) and direction is 0 or 1: inside the portLimit * 2
        // counters.
        return ferry_load_relaxed_u64(drops + Int(port) * 2 + Int(direction.rawValue))
    }

    /// Bytes waiting for the consumer.
    public var used: Int { Int(tail.load(ordering: .acquiring) &- head.load(ordering: .acquiring)) }

    /// Copies frame `f` of `batch` (at most `snapLength` bytes of it) into the
    /// ring; false, and counted, when the ring has no room. Producer only.
    @inlinable
    @discardableResult
    public func append(frame f: Int, of batch: PacketBatch, port: UInt16, direction: CaptureDirection,
                       microseconds: UInt64, snapLength: Int) -> Bool {
        let original = Int(batch.lengths[f])
        let captured = original < snapLength ? original : snapLength
        let size = (Self.headerSize &+ captured &+ 7) & ~7
        // Relaxed: only this thread stores `tail`.
        var position = tail.load(ordering: .relaxed)
        // Acquire: the consumer read the bytes before it released them with this store.
        let free = UInt64(capacity) &- (position &- head.load(ordering: .acquiring))
        let offset = Int(position & UInt64(capacity &- 1))
        let untilEnd = capacity &- offset
        let needed = untilEnd < size ? untilEnd &+ size : size
        guard UInt64(needed) <= free else {
            if Int(port) < portLimit {
                // SAFETY: port < portLimit (tested on the line above) and direction is 0 or 1: inside
                // the portLimit * 2 counters.
                let counter = drops + (Int(port) &* 2 &+ Int(direction.rawValue))
                ferry_store_relaxed_u64(counter, ferry_load_relaxed_u64(counter) &+ 1)
            }
            return false
        }
        if untilEnd < size {
            // SAFETY: offsets and sizes are multiples of 8, so at least the 8 bytes
            // holding the length and the kind fit before the end of the block.
            (storage + offset).storeBytes(of: UInt32(untilEnd), as: UInt32.self)
            (storage + offset).storeBytes(of: Self.paddingKind, toByteOffset: 6, as: UInt8.self)
            position &+= UInt64(untilEnd)
        }
        // SAFETY: the record starts inside the ring (position masked to capacity, a power of two) and
        // its `size` bytes fit before the end: either untilEnd >= size, or the padding above moved it
        // to offset 0; and `needed` <= `free` was checked, so it overwrites nothing the consumer has
        // not read. The header's fields (24 bytes) are inside `size`.
        let record = storage + Int(position & UInt64(capacity &- 1))
        record.storeBytes(of: UInt32(size), as: UInt32.self)
        record.storeBytes(of: port, toByteOffset: 4, as: UInt16.self)
        record.storeBytes(of: direction.rawValue, toByteOffset: 6, as: UInt8.self)
        record.storeBytes(of: 0, toByteOffset: 7, as: UInt8.self)
        record.storeBytes(of: UInt32(truncatingIfNeeded: original), toByteOffset: 8, as: UInt32.self)
        record.storeBytes(of: UInt32(captured), toByteOffset: 12, as: UInt32.self)
        record.storeBytes(of: microseconds, toByteOffset: 16, as: UInt64.self)
        var copied = 0
        var s = Int(batch.firstSegments[f])
        let end = s &+ Int(batch.segmentCounts[f])
        while copied < captured && s < end {
            let piece = Int(batch.segmentLengths[s])
            let take = piece < captured &- copied ? piece : captured &- copied
            // SAFETY: the record has room for `captured` bytes after its header
            // (checked against `free` above); the segment holds `piece` bytes.
            (record + (Self.headerSize &+ copied)).copyMemory(from: batch.segmentBases[s], byteCount: take)
            copied &+= take
            s &+= 1
        }
        // Release: the record's bytes are visible before the consumer sees the new tail.
        tail.store(position &+ UInt64(size), ordering: .releasing)
        return true
    }

    /// Hands every waiting record to `body`, oldest first, then gives their
    /// room back to the producer. Returns how many records were read. Consumer only.
    @discardableResult
    public func drain(_ body: (CapturedFrame) -> Void) -> Int {
        // Acquire: the producer's record bytes happen before its release of `tail`.
        let end = tail.load(ordering: .acquiring)
        var position = head.load(ordering: .relaxed)
        var records = 0
        while position != end {
            // SAFETY: position < tail, so it starts a record the producer wrote (released by `tail`,
            // acquired above): inside the ring, masked as in append; a padding record is read for its
            // first 8 bytes only, a frame record has its 24-byte header and `captured` bytes within its
            // size.
            let record = UnsafeRawPointer(storage + Int(position & UInt64(capacity &- 1)))
            let size = Int(record.load(as: UInt32.self))
            let kind = record.load(fromByteOffset: 6, as: UInt8.self)
            if kind != Self.paddingKind, let direction = CaptureDirection(rawValue: kind) {
                let captured = Int(record.load(fromByteOffset: 12, as: UInt32.self))
                body(CapturedFrame(port: record.load(fromByteOffset: 4, as: UInt16.self), direction: direction,
                                   microseconds: record.load(fromByteOffset: 16, as: UInt64.self),
                                   originalLength: Int(record.load(fromByteOffset: 8, as: UInt32.self)),
                                   bytes: UnsafeRawBufferPointer(start: record + Self.headerSize, count: captured)))
                records += 1
            }
            position &+= UInt64(size)
        }
        // Release: we are done reading these bytes before the producer may overwrite them.
        head.store(position, ordering: .releasing)
        return records
    }
}
