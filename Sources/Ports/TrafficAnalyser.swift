import CFerry
import Model
import Packets
import Platform

/// What a sink learns from the frames it swallows (docs/LAB.md): the `LabStamp` of each
/// generator frame read back, per flow and in total — frames, loss from sequence gaps,
/// frames that came late (reordered) or twice (duplicates), and the latency from the
/// stamp's send time to now. One writer, the worker that pushes into the sink; readers on
/// other threads read relaxed atomics (`snapshot`). Nothing is allocated per frame.
///
/// Each flow keeps the next sequence number it expects and a 64-frame window of the ones
/// before it: a frame behind the window is counted `late` (too late to tell a reordered
/// frame from a duplicate) and leaves the loss as it was.
public final class TrafficAnalyser: @unchecked Sendable {
    public static var flowCapacity: Int { GeneratorSpec.flowLimit }

    // Totals, then per flow `perFlow` slots each; relaxed atomics.
    @usableFromInline static var stampedSlot: Int { 0 }
    @usableFromInline static var unstampedSlot: Int { 1 }
    @usableFromInline static var lostSlot: Int { 2 }
    @usableFromInline static var reorderedSlot: Int { 3 }
    @usableFromInline static var duplicateSlot: Int { 4 }
    @usableFromInline static var lateSlot: Int { 5 }
    @usableFromInline static var foreignSlot: Int { 6 }
    @usableFromInline static var totalSlots: Int { 8 }
    // A flow's: frames, lost, reordered, duplicates, late, latency sum, latency max, bytes.
    @usableFromInline static var perFlow: Int { 8 }

    @usableFromInline let slots: UnsafeMutablePointer<UInt64>
    /// Per flow, the worker's own: the next expected sequence number and the window.
    @usableFromInline let expected: UnsafeMutablePointer<UInt32>
    @usableFromInline let windows: UnsafeMutablePointer<UInt64>
    /// A frame whose first segment is too short to hold its stamp is gathered here first.
    @usableFromInline let scratch: UnsafeMutableRawPointer
    public let latency = LatencyHistogram()

    public init() {
        let count = Self.totalSlots + Self.flowCapacity * Self.perFlow
        // SAFETY: each fill covers exactly the count allocated just before it.
        slots = .allocate(capacity: count)
        slots.initialize(repeating: 0, count: count)
        expected = .allocate(capacity: Self.flowCapacity)
        expected.initialize(repeating: 0, count: Self.flowCapacity)
        windows = .allocate(capacity: Self.flowCapacity)
        windows.initialize(repeating: 0, count: Self.flowCapacity)
        scratch = .allocate(byteCount: LabStamp.furthestEnd, alignment: 8)
    }

    deinit {
        slots.deallocate()
        expected.deallocate()
        windows.deallocate()
        scratch.deallocate()
    }

    @inlinable
    func add(_ slot: Int, _ n: UInt64) {
        // SAFETY: slot is one of the totalSlots constants or totalSlots + flow * perFlow + 0...7 with
        // flow < flowCapacity (count's guard), below totalSlots + flowCapacity * perFlow, the length of
        // slots.
        let p = slots + slot
        ferry_store_relaxed_u64(p, ferry_load_relaxed_u64(p) &+ n)
    }

    @inlinable
    func subtract(_ slot: Int, _ n: UInt64) {
        // SAFETY: as in `add`: slot < totalSlots + flowCapacity * perFlow.
        let p = slots + slot
        ferry_store_relaxed_u64(p, ferry_load_relaxed_u64(p) &- n)
    }

    /// Reads the stamps of every frame of `batch`, which the sink was handed. Most frames a
    /// sink swallows carry no stamp (a front-end's or a guest's traffic): such a frame costs
    /// its parse, inlined here, and a local count added once per burst; the clock is read only
    /// when a burst holds a stamped frame (a call and a count per frame and a clock read per
    /// burst were ~10 % of the worker at W1's rate; docs/PERFORMANCE.md, "The worker's side, and
    /// the use pass").
    @inlinable
    public func inspect(_ batch: PacketBatch) {
        let count = batch.count
        var unstamped: UInt64 = 0
        var now: UInt64 = 0
        var frame = 0
        while frame < count {
            let segments = batch.segments(of: frame)
            let frameLength = batch.length(of: frame)
            let length = min(batch.segmentLength(segments.lowerBound), frameLength)
            let found: (flow: UInt16, sequence: UInt32, time: UInt64)?
            if length < min(frameLength, LabStamp.furthestEnd) && segments.count > 1 {
                found = gatheredStamp(frame: frame, of: batch)
            } else {
                // SAFETY: `length` is at most the first segment's length, readable at its base (the
                // batch invariant).
                found = Self.stamp(in: UnsafeRawBufferPointer(start: batch.segmentBase(segments.lowerBound),
                                                              count: length))
            }
            if let stamp = found {
                if now == 0 { now = Self.now() }
                self.count(flow: Int(stamp.flow), sequence: stamp.sequence, sentAt: stamp.time,
                           bytes: UInt64(frameLength), now: now)
            } else {
                unstamped &+= 1
            }
            frame &+= 1
        }
        if unstamped > 0 { add(Self.unstampedSlot, unstamped) }
    }

    /// The clock a stamp's send time was read on, out of the per-frame loop.
    @usableFromInline @inline(never)
    static func now() -> UInt64 { RawMonotonicClock.nanoseconds() }

    /// The stamp of a frame whose first segment is too short to hold it, read from its first
    /// bytes gathered into `scratch`.
    @usableFromInline @inline(never)
    func gatheredStamp(frame: Int, of batch: PacketBatch) -> (flow: UInt16, sequence: UInt32, time: UInt64)? {
        let length = gather(frame: frame, of: batch)
        // SAFETY: gather copied `length` bytes into scratch.
        return Self.stamp(in: UnsafeRawBufferPointer(start: scratch, count: length))
    }

    /// Copies the first `LabStamp.furthestEnd` bytes of a frame of several segments into `scratch`.
    @usableFromInline
    func gather(frame: Int, of batch: PacketBatch) -> Int {
        var copied = 0
        let wanted = min(batch.length(of: frame), LabStamp.furthestEnd)
        for segment in batch.segments(of: frame) where copied < wanted {
            let n = min(batch.segmentLength(segment), wanted - copied)
            // SAFETY: copied + n <= wanted <= furthestEnd, scratch's size; the segment holds n bytes.
            (scratch + copied).copyMemory(from: batch.segmentBase(segment), byteCount: n)
            copied += n
        }
        return copied
    }

    /// The stamp of a generator frame (Ethernet, up to two tags, IPv4, UDP, `LabStamp`), or nil.
    @inlinable @inline(__always)
    static func stamp(in frame: UnsafeRawBufferPointer) -> (flow: UInt16, sequence: UInt32, time: UInt64)? {
        // SAFETY: every load is tested against frame.count first: the EtherType and each tag (offset +
        // 2), the IPv4 header, and the stamp's LabStamp.size bytes at `at`.
        func u16(_ offset: Int) -> UInt16 { UInt16(bigEndian: frame.loadUnaligned(fromByteOffset: offset, as: UInt16.self)) }
        var offset = Ethernet.etherTypeOffset
        guard frame.count >= offset + 2 else { return nil }
        var type = u16(offset)
        var tags = 0
        while (type == Ethernet.tpidCustomerVLAN || type == Ethernet.tpidServiceVLAN) && tags < 2 {
            offset &+= Ethernet.tagSize
            guard frame.count >= offset + 2 else { return nil }
            type = u16(offset)
            tags &+= 1
        }
        let ip = offset &+ 2
        guard type == 0x0800, frame.count >= ip + LabStamp.ipv4HeaderSize else { return nil }
        let versionAndLength = frame[ip]
        let headerLength = Int(versionAndLength & 0x0f) &* 4
        guard versionAndLength >> 4 == 4, headerLength >= LabStamp.ipv4HeaderSize, frame[ip &+ 9] == 17 else { return nil }
        let at = ip &+ headerLength &+ LabStamp.udpHeaderSize
        guard frame.count >= at &+ LabStamp.size, u16(at) == LabStamp.magic else { return nil }
        return (u16(at &+ 2), UInt32(bigEndian: frame.loadUnaligned(fromByteOffset: at &+ 4, as: UInt32.self)),
                UInt64(bigEndian: frame.loadUnaligned(fromByteOffset: at &+ 8, as: UInt64.self)))
    }

    /// Counts one stamped frame of `flow` against the flow's expected sequence number.
    @inlinable @inline(never)
    public func count(flow: Int, sequence: UInt32, sentAt: UInt64, bytes: UInt64, now: UInt64) {
        add(Self.stampedSlot, 1)
        guard flow < Self.flowCapacity else {
            add(Self.foreignSlot, 1)
            return
        }
        let base = Self.totalSlots &+ flow &* Self.perFlow
        add(base, 1)
        add(base &+ 7, bytes)
        // SAFETY: flow < flowCapacity (the guard above), the length of expected and windows; base +
        // 0...7 lies in slots (see `add`).
        let next = expected[flow]
        let ahead = Int32(bitPattern: sequence &- next)
        if ahead >= 0 {
            // In order (0) or after a gap of `ahead` frames, counted lost until they come.
            if ahead > 0 {
                add(Self.lostSlot, UInt64(ahead))
                add(base &+ 1, UInt64(ahead))
            }
            let shift = UInt64(ahead) &+ 1
            windows[flow] = shift >= 64 ? 1 : (windows[flow] << shift) | 1
            expected[flow] = sequence &+ 1
        } else {
            let back = Int(-Int64(ahead)) &- 1
            if back >= 64 {
                add(Self.lateSlot, 1)
                add(base &+ 4, 1)
            } else if windows[flow] & (1 << UInt64(back)) != 0 {
                add(Self.duplicateSlot, 1)
                add(base &+ 3, 1)
                return
            } else {
                windows[flow] |= 1 << UInt64(back)
                add(Self.reorderedSlot, 1)
                add(base &+ 2, 1)
                subtract(Self.lostSlot, 1)
                subtract(base &+ 1, 1)
            }
        }
        guard now >= sentAt else { return }
        let latency = now &- sentAt
        self.latency.record(latency)
        add(base &+ 5, latency)
        let maxSlot = slots + (base &+ 6)
        if latency > ferry_load_relaxed_u64(maxSlot) { ferry_store_relaxed_u64(maxSlot, latency) }
    }

    /// The counts now (allocates: for the control thread).
    public var snapshot: TrafficAnalysis {
        // SAFETY: every slot read is a constant below totalSlots or base + 0...7 of a flow below
        // flowCapacity.
        func read(_ slot: Int) -> UInt64 { ferry_load_relaxed_u64(slots + slot) }
        var flows: [TrafficAnalysis.Flow] = []
        for flow in 0..<Self.flowCapacity {
            let base = Self.totalSlots + flow * Self.perFlow
            let frames = read(base)
            let lost = read(base + 1)
            guard frames > 0 || lost > 0 else { continue }
            flows.append(TrafficAnalysis.Flow(
                flow: flow, frames: frames, bytes: read(base + 7), lost: lost, reordered: read(base + 2),
                duplicates: read(base + 3), late: read(base + 4), latencySum: read(base + 5), latencyMax: read(base + 6)))
        }
        return TrafficAnalysis(stamped: read(Self.stampedSlot), unstamped: read(Self.unstampedSlot),
                               lost: read(Self.lostSlot), reordered: read(Self.reorderedSlot),
                               duplicates: read(Self.duplicateSlot), late: read(Self.lateSlot),
                               foreign: read(Self.foreignSlot), flows: flows, latency: latency.snapshot)
    }
}

/// A sink's analysis at one moment.
public struct TrafficAnalysis: Equatable, Sendable {
    public struct Flow: Equatable, Sendable {
        public var flow: Int
        public var frames: UInt64
        public var bytes: UInt64
        public var lost: UInt64
        public var reordered: UInt64
        public var duplicates: UInt64
        public var late: UInt64
        public var latencySum: UInt64
        public var latencyMax: UInt64
    }

    /// Frames that carried a stamp, and frames that did not (not a generator's).
    public var stamped: UInt64
    public var unstamped: UInt64
    /// Sequence numbers skipped and not (yet) seen: a frame that arrives late takes itself off.
    public var lost: UInt64
    public var reordered: UInt64
    public var duplicates: UInt64
    /// Frames more than 64 behind their flow: neither reordered nor duplicate can be told.
    public var late: UInt64
    /// Stamped frames of a flow beyond `TrafficAnalyser.flowCapacity`, not accounted per flow.
    public var foreign: UInt64
    public var flows: [Flow]
    public var latency: LatencySummary
}
