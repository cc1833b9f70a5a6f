import Model
import Packets
import Platform
import Synchronization

/// A traffic generator (docs/CONFIG.md `gen:`, docs/LAB.md): frames built once into a
/// `GeneratorFramePool` and sent from it, each stamped with its flow's sequence number
/// and the send time, at a rate (in bursts) or as fast as the destinations take them.
/// Sending costs the two stamp stores per frame and the destination's copy. Stops after
/// `count` frames, or never; `ferry lab` runs it in trials (`startTrial`).
public final class GenPort {
    public let spec: GeneratorSpec
    /// Milliseconds to wait, once the destination first has room, before the
    /// first frame: front-ends such as DPDK's virtio PMD flush their RX rings
    /// while they start, and frames sent in that window never reach them.
    public var delayMilliseconds: Int { spec.delayMilliseconds }
    @usableFromInline var startAt: Double = 0
    @usableFromInline var started = false
    public let counters = QueueCounters()
    @usableFromInline let pool: GeneratorFramePool
    /// The next sequence number of each flow; only the pulling worker touches them.
    @usableFromInline let sequences: UnsafeMutablePointer<UInt32>
    @usableFromInline let stampOffset: Int
    @usableFromInline let stamped: Bool
    /// The pool slot the next frame is sent from.
    @usableFromInline var cursor = 0

    // The schedule, the pulling worker's alone: frames per nanosecond (0: unlimited),
    // when the current trial started and how many of its frames left.
    @usableFromInline var framesPerNanosecond: Double = 0
    @usableFromInline var burst: Int
    @usableFromInline var backlogLimit: UInt64 = 0
    @usableFromInline var trialStart: UInt64 = 0
    @usableFromInline var trialSent: UInt64 = 0
    @usableFromInline var adoptedTrial: UInt64 = 0

    /// Frames emitted so far. The worker that pulls is the only writer; the
    /// control thread reads it (`isFinished`, `ferry ctl show ports`), hence relaxed
    /// atomics, which cost the worker what plain loads and stores do.
    @usableFromInline let emitted = Atomic<UInt64>(0)
    /// `emitted` at which the generator stops; UInt64.max: never.
    @usableFromInline let stopAt: Atomic<UInt64>
    /// Frames the schedule gave up because the worker fell more than 50 ms behind it: a
    /// worker that was not run for a while catches up by at most 50 ms of frames.
    @usableFromInline let lagged = Atomic<UInt64>(0)
    /// The raw clock at the current trial's first and latest burst.
    @usableFromInline let trialFirstSend = Atomic<UInt64>(0)
    @usableFromInline let trialLastSend = Atomic<UInt64>(0)

    // A trial the control thread asks for, taken up by the worker at its next pull.
    @usableFromInline let requestedTrial = Atomic<UInt64>(0)
    @usableFromInline let requestedRate = Atomic<UInt64>(0)
    @usableFromInline let requestedCount = Atomic<UInt64>(0)
    /// The trial the worker last took up (`adoptedTrial`), for the control side: stored after
    /// the trial's `stopAt`, so whoever sees it sees that stop.
    @usableFromInline let takenTrial = Atomic<UInt64>(0)

    public static var sizes: ClosedRange<Int> { PortLimits.genFrameSizes }

    public init(_ spec: GeneratorSpec, batchCapacity: Int = 256) {
        precondition(spec.sizes.pattern.allSatisfy { GeneratorSpec.sizes.contains($0) && $0 >= spec.smallestFrame })
        precondition((1...GeneratorSpec.flowLimit).contains(spec.flows))
        self.spec = spec
        started = spec.delayMilliseconds == 0
        pool = GeneratorFramePool(spec, minimumSlots: max(batchCapacity, 256))
        // SAFETY: the fill covers exactly the spec.flows counters just allocated.
        sequences = .allocate(capacity: spec.flows)
        sequences.initialize(repeating: 0, count: spec.flows)
        stampOffset = LabStamp.offset(tagged: spec.tag != nil)
        stamped = spec.stamped
        burst = spec.burst
        stopAt = Atomic(spec.count ?? .max)
        if let rate = spec.framesPerSecond { adopt(framesPerSecond: rate) }
    }

    /// The generator of before: one size, one flow, unstamped (every frame the same bytes,
    /// `udpFrame`), as fast as the destinations take frames.
    public convenience init(destination: MACAddress, source: MACAddress, frameSize: Int, count: UInt64?,
                            delayMilliseconds: Int = 0) {
        self.init(GeneratorSpec(destination: destination, source: source, sizes: .fixed(frameSize), count: count,
                                delayMilliseconds: delayMilliseconds, stamped: false))
    }

    /// The frame an unstamped one-flow generator sends: what a test expects to arrive.
    public static func udpFrame(destination: MACAddress, source: MACAddress, size: Int) -> [UInt8] {
        GeneratorFramePool.frame(GeneratorSpec(destination: destination, source: source, stamped: false), flow: 0, size: size)
    }

    deinit { sequences.deallocate() }

    public var queueCount: Int { 1 }
    /// Finished: no trial waits to be taken up and the current one has sent its count.
    public var isFinished: Bool {
        guard takenTrial.load(ordering: .acquiring) == requestedTrial.load(ordering: .acquiring) else { return false }
        return emitted.load(ordering: .relaxed) >= stopAt.load(ordering: .relaxed)
    }
    /// Frames sent so far.
    public var sent: UInt64 { emitted.load(ordering: .relaxed) }
    /// The mean size of the frames it sends, bytes: bit rates are frame rates times this.
    public var meanFrameSize: Double { pool.meanFrameSize }
    /// Frames the schedule skipped: the worker was more than 50 ms late.
    public var laggedFrames: UInt64 { lagged.load(ordering: .relaxed) }
    /// A rate-limited generator is not held back by a full destination, as a traffic
    /// generator on a wire is not: what the destination cannot take it drops and counts;
    /// unless asked to wait (`full=wait`), as a sender that honours flow control does.
    public var waitsForRoom: Bool { spec.rate == .unlimited || spec.waitsWhenFull }
    /// Whether every destination once had room. A rated generator holds its first frame until
    /// then: a guest that has not started its rings, or has not posted buffers yet, would lose
    /// what a generator added beside it (or started with it) sends at once. Room for a frame,
    /// not for a burst: a guest's ring may be smaller than the burst. The pulling worker's alone.
    @usableFromInline var destinationsReady = false
    /// The worker asks the destinations' room before it pulls: always for a generator
    /// without a rate, until they are ready for one with a rate.
    @inlinable public var asksForRoom: Bool { waitsForRoom || !destinationsReady }

    /// How many frames the generator may emit now, given the fewest any destination can take
    /// (`room`, counted up to the worker's burst): 0 to skip this pass.
    @inlinable
    public func allowance(destinationRoom room: Int) -> Int {
        if waitsForRoom { return room }
        guard room > 0 else { return 0 }
        destinationsReady = true
        return .max
    }

    /// Asks for a trial: `count` frames (nil: until the next trial) at `framesPerSecond`
    /// (nil: as fast as they go; 0: none). The worker takes it up at its next pull; the
    /// schedule starts at the trial's first frame. Called by the control side only.
    public func startTrial(framesPerSecond: Double?, count: UInt64?) {
        requestedRate.store((framesPerSecond ?? -1).bitPattern, ordering: .relaxed)
        requestedCount.store(count ?? .max, ordering: .relaxed)
        // `stopAt` is the worker's alone: a pull that read the trial number just before this
        // request and the stop just after would send under the old trial's schedule (up to a
        // batch more than the new count). Until taken up, the trial is not finished (`isFinished`).
        requestedTrial.add(1, ordering: .releasing)
    }

    /// The raw-clock nanoseconds between the current trial's first and latest burst.
    public var trialSpan: (first: UInt64, last: UInt64) {
        (trialFirstSend.load(ordering: .relaxed), trialLastSend.load(ordering: .relaxed))
    }

    @usableFromInline
    func adoptRequestedTrial(_ trial: UInt64) {
        adoptedTrial = trial
        let rate = Double(bitPattern: requestedRate.load(ordering: .relaxed))
        let count = requestedCount.load(ordering: .relaxed)
        let now = emitted.load(ordering: .relaxed)
        stopAt.store(rate == 0 ? now : (count == .max ? .max : now &+ count), ordering: .relaxed)
        takenTrial.store(trial, ordering: .releasing)
        // A stop (rate 0) keeps the times of the trial it ends, for whoever asked to stop it.
        guard rate != 0 else { return }
        if rate > 0 { adopt(framesPerSecond: rate) } else { framesPerNanosecond = 0 }
        trialStart = 0
        trialSent = 0
        trialFirstSend.store(0, ordering: .relaxed)
        trialLastSend.store(0, ordering: .relaxed)
    }

    func adopt(framesPerSecond rate: Double) {
        framesPerNanosecond = rate / 1e9
        backlogLimit = max(UInt64(burst), UInt64(rate / 20))
    }

    @inlinable
    public func pull(queue _: Int, into batch: PacketBatch) -> Int {
        let trial = requestedTrial.load(ordering: .acquiring)
        if trial != adoptedTrial { adoptRequestedTrial(trial) }
        if !started && !delayElapsed() { return 0 }
        var n = batch.room
        let sent = emitted.load(ordering: .relaxed)
        let stop = stopAt.load(ordering: .relaxed)
        guard sent < stop else { return 0 }
        let left = stop &- sent
        if left < UInt64(n) { n = Int(left) }
        if n > batch.freeSegments { n = batch.freeSegments }
        guard n > 0 else { return 0 }
        let now = RawMonotonicClock.nanoseconds()
        if framesPerNanosecond > 0 {
            if trialStart == 0 {
                trialStart = now
                trialFirstSend.store(now, ordering: .relaxed)
            }
            let due = UInt64(Double(now &- trialStart) * framesPerNanosecond)
            var owed = due > trialSent ? due &- trialSent : 0
            if owed > backlogLimit {
                lagged.addAsOnlyWriter(owed &- backlogLimit)
                trialSent &+= owed &- backlogLimit
                owed = backlogLimit
            }
            // Frames leave in whole bursts, but for the trial's last few. A worker that comes
            // late (descheduled, or a pass slower than a burst's time) sends every whole burst
            // due at once, up to the batch: one burst per pass would never catch up at a rate
            // whose burst time is shorter than a pass.
            if owed < UInt64(burst) && owed < left { return 0 }
            if owed < UInt64(n) { n = Int(owed) }
            if n > burst && UInt64(n) < left { n -= n % burst }
            trialSent &+= UInt64(n)
        } else if trialFirstSend.load(ordering: .relaxed) == 0 {
            trialFirstSend.store(now, ordering: .relaxed)
        }
        trialLastSend.store(now, ordering: .relaxed)
        let bytes = emit(n, stampedAt: now, into: batch)
        emitted.store(sent &+ UInt64(n), ordering: .relaxed)
        counters.received(packets: n, bytes: bytes)
        return n
    }

    /// Appends the next `n` frames of the pool, stamped; returns their bytes.
    @inlinable
    func emit(_ n: Int, stampedAt now: UInt64, into batch: PacketBatch) -> UInt64 {
        var k = cursor
        var bytes: UInt64 = 0
        let time = now.bigEndian
        var i = 0
        while i < n {
            let base = pool.frames[k]
            let length = pool.lengths[k]
            if stamped {
                let flow = Int(truncatingIfNeeded: pool.flows[k])
                // SAFETY: the pool gives frame k the flow k % spec.flows (GeneratorFramePool.init),
                // below spec.flows, the length of sequences.
                let sequence = sequences[flow]
                sequences[flow] = sequence &+ 1
                // SAFETY: every slot holds at least stampOffset + LabStamp.size bytes (init's precondition).
                (base + stampOffset).storeBytes(of: sequence.bigEndian, toByteOffset: 4, as: UInt32.self)
                (base + stampOffset).storeBytes(of: time, toByteOffset: 8, as: UInt64.self)
            }
            batch.append(base: base, length: length, token: 0)
            bytes &+= UInt64(length)
            k &+= 1
            if k == pool.slotCount { k = 0 }
            i &+= 1
        }
        cursor = k
        return bytes
    }

    @usableFromInline
    func delayElapsed() -> Bool {
        let now = MonotonicClock.now(coarse: true)
        if startAt == 0 { startAt = now + Double(spec.delayMilliseconds) / 1000 }
        started = now >= startAt
        return started
    }

    @inlinable public func release(queue _: Int) {}

    /// Frames sent to a generator go nowhere; they are counted as delivered.
    @inlinable
    public func push(queue _: Int, from batch: PacketBatch) {
        counters.sent(packets: batch.count, bytes: batch.totalBytes)
    }
}
