import CFerry
import Glibc
import Model
import Packets
import Ports
import Synchronization
import Platform
import Switching
import VhostUser
import Virtio
import XDP

/// A data-path thread: polls its receive queues in bursts, switches each burst
/// (Worker+Switching.swift) and never blocks, allocates or locks while doing
/// so. The control plane changes what the worker reads only while the worker
/// is parked (`whilePaused`), so the burst loop needs no lock: one relaxed load
/// per loop tells it to park.
public final class Worker: DataPathGate, @unchecked Sendable {
    public let id: Int
    public let cpu: Int?
    public let batchSize: Int
    public let bridge: Bridge
    @usableFromInline let database: ForwardingDatabase
    @usableFromInline let forwarder: Forwarder
    /// The receive queues this worker polls.
    @usableFromInline var sources: ContiguousArray<WorkerSource> = []
    /// Every switch port by number, as this worker transmits to it.
    @usableFromInline var ports: ContiguousArray<WorkerPort> = []
    /// Source addresses this worker saw and the database does not know (yet).
    public let learning = LearningQueue()
    /// This worker's unicast/flood/hairpin decisions.
    public let decisions = DecisionCounters()
    /// The last decision of the current burst, reused for the next frame of the
    /// same flow (same addresses and VLAN): most bursts are one or two flows.
    @usableFromInline var recent = RecentDecision()
    @usableFromInline var learningPending = false
    /// Per-frame scratch of one burst: where each frame goes, its VLAN
    /// (and whether it came tagged: `arrivedTagged`).
    @usableFromInline let destinations: UnsafeMutablePointer<FrameDestination>
    /// The ports a burst whose frames go to several ports reaches (`PortSet.wordCount` words).
    @usableFromInline let burstPorts: UnsafeMutablePointer<UInt64>
    @usableFromInline let vlans: UnsafeMutablePointer<UInt16>
    /// The frames of a burst bound for one port, by reference, tags edited.
    @usableFromInline let view: PacketBatch
    /// Per source: loops still to skip, and the current skip length, for the
    /// sources where looking costs a syscall.
    @usableFromInline let skipLoops: UnsafeMutablePointer<UInt16>
    @usableFromInline let skipLength: UnsafeMutablePointer<UInt16>
    /// Most loops an empty TAP queue is skipped: at most a few tens of
    /// microseconds of added latency for its first frame after a quiet spell.
    @usableFromInline static let maxSkip: UInt16 = 64
    /// Frames moved that use up one more loop of a skip (`loopsSkipped(afterMoving:)`).
    @usableFromInline static let framesPerSkippedLoop = 4
    /// Frames the last loop moved, which shortens the skips of the next.
    @usableFromInline var movedLastLoop = 0
    /// An Ethernet header split across segments, gathered.
    @usableFromInline let gathered: UnsafeMutableRawPointer
    /// The direct TAP → guest path (Worker+Direct.swift): the private copy of
    /// a frame's first bytes, a guest chain's buffers, the read's iovecs.
    @usableFromInline let directPrefix: UnsafeMutableRawPointer
    @usableFromInline let chainPieces: UnsafeMutablePointer<iovec>
    @usableFromInline let directVectors: UnsafeMutablePointer<iovec>

    /// Frames adapted for a destination that takes less than they ask
    /// (Worker+Offloads.swift): the batch handed over instead, the segmenter
    /// the destination port cuts GSO frames with, and the slots frames whose
    /// checksum the worker finished are written into.
    @usableFromInline let adapted: PacketBatch
    /// The inner frames of VXLAN datagrams an xdp uplink's pull set apart, one
    /// vxlan port's at a time (Worker+Tunnels.swift).
    @usableFromInline let tunnelInner: PacketBatch
    @usableFromInline let segmenter = SoftwareSegmenter()
    @usableFromInline let adaptedSlots: UnsafeMutableRawPointer
    @usableFromInline let adaptedLengths: UnsafeMutablePointer<Int>

    let pauseRequested = Atomic<Bool>(false)
    private let parked = Atomic<Bool>(false)
    private let stopRequested = Atomic<Bool>(false)
    private let running = Atomic<Bool>(false)
    private let gateLock = Mutex<Void>(())
    private var thread: pthread_t?
    /// The kernel's id of the worker's thread once it runs (what sched_getscheduler(2) takes).
    let threadID = Atomic<Int32>(0)

    /// Loops that moved frames, and loops that found none: the busy/idle ratio.
    /// Like every counter of the worker's own, written by the worker alone, so
    /// counted with a relaxed load and store (`addAsOnlyWriter`), never a locked
    /// read-modify-write once per pass.
    public let busyLoops = Atomic<UInt64>(0)
    public let idleLoops = Atomic<UInt64>(0)
    /// Times the worker went to sleep waiting for a kick.
    public let sleeps = Atomic<UInt64>(0)
    /// Nanoseconds spent asleep in `poll`: wall time minus this is time awake
    /// (spinning through empty loops counts as awake).
    public let asleepNanoseconds = Atomic<UInt64>(0)
    /// Copies of captured frames on their way to the control thread (Worker+Capture.swift).
    public let captureRing = CaptureRing()
    /// This pass's capture selection: whether any port is captured, the ports
    /// whose received or transmitted frames are copied into `captureRing`
    /// (`PortSet.wordCount` words each), and how much of each.
    @usableFromInline var capturing = false
    @usableFromInline let capturedReceive: UnsafeMutablePointer<UInt64>
    @usableFromInline let capturedTransmit: UnsafeMutablePointer<UInt64>
    @usableFromInline var captureSnapLength = 0
    /// Wakes a sleeping worker for the control plane (a pause, a stop).
    let wakeEvent: FileDescriptor
    var wakeFD: Int32 { wakeEvent.rawValue }
    /// What to wait on when going to sleep, kept so that sleeping allocates nothing.
    var wakeSources = WakeSources(capacity: 64)
    /// A source can never be slept on (`Port.isAlwaysPolled`): set by `install`.
    var pollsAlways = false
    /// This pass polled a generator that has frames left to send: the worker
    /// cannot sleep on it, so it does not try (an empty pass of a generator's
    /// worker is one whose destinations are full, and building the wake
    /// sources each time cost it 10.8 % of its samples; docs/PERFORMANCE.md).
    @usableFromInline var polledARunningGenerator = false

    /// How long a sleeping worker waits before looking around anyway.
    let sleepTimeoutMilliseconds: Int32
    /// When the worker sleeps (Worker+Idle.swift).
    public let idle: IdlePolicy
    /// The scheduling class it sleeps and wakes in (Worker+Idle.swift); false
    /// once the system refused real-time scheduling, so it is asked only once.
    var realtimeAllowed: Bool
    /// Whether the worker is a real-time task now, and the passes it made since
    /// it last woke: a woken worker stays real-time for at most `WakePriority.realtimePasses`.
    var isRealtime = false
    var passesSinceWake = 0
    /// Frames came from a guest's ring since the worker last slept: what
    /// decides whether `adaptive` spins before the next sleep.
    @usableFromInline var heardFromGuest = false
    /// The last sleep ended at once, a frame already waiting: frames stream
    /// in, and `adaptive` spins a little before the next sleep (`IdlePolicy.streamSpin`).
    var lastSleepEndedAtOnce = false
    /// Who sent the frames into the TAPs (Worker+SenderFollowing.swift); nil:
    /// the worker stays where the scheduler wakes it. Set while parked.
    var senderCPU: SenderCPUProgram?
    /// The sender's CPU a TAP wake-up decided on, moved to before the next sleep.
    var senderCPUToFollow: Int?
    /// The CPUs the worker's thread may run on, read when it starts (unpinned workers only).
    var allowedCPUs: CPUSet?
    /// Times the worker moved to a TAP sender's CPU, and moves refused (after which it stops following).
    public let senderMoves = Atomic<UInt64>(0)
    public let senderMoveFailures = Atomic<UInt64>(0)

    public init(id: Int, cpu: Int?, batchSize: Int, bridge: Bridge, idle: IdlePolicy = .default,
                wakePriority: WakePriority = .default, sleepTimeoutMilliseconds: Int32 = 100) {
        precondition((1...1024).contains(batchSize))
        self.bridge = bridge
        self.database = bridge.database
        self.forwarder = bridge.forwarder
        // SAFETY: each fill covers exactly the count allocated just before it.
        destinations = .allocate(capacity: batchSize)
        destinations.initialize(repeating: .nowhere, count: batchSize)
        burstPorts = .allocate(capacity: PortSet.wordCount)
        burstPorts.initialize(repeating: 0, count: PortSet.wordCount)
        capturedReceive = .allocate(capacity: PortSet.wordCount)
        capturedReceive.initialize(repeating: 0, count: PortSet.wordCount)
        capturedTransmit = .allocate(capacity: PortSet.wordCount)
        capturedTransmit.initialize(repeating: 0, count: PortSet.wordCount)
        vlans = .allocate(capacity: batchSize)
        vlans.initialize(repeating: 0, count: batchSize)
        view = PacketBatch(capacity: batchSize, segmentsPerFrame: Self.segmentsPerFrame + PacketBatch.segmentsAddedByTagEdit)
        skipLoops = .allocate(capacity: Self.maxSources)
        skipLoops.initialize(repeating: 0, count: Self.maxSources)
        skipLength = .allocate(capacity: Self.maxSources)
        skipLength.initialize(repeating: 0, count: Self.maxSources)
        gathered = .allocate(byteCount: 32, alignment: 8)
        gathered.initializeMemory(as: UInt8.self, repeating: 0, count: 32)
        directPrefix = .allocate(byteCount: 32, alignment: 8)
        directPrefix.initializeMemory(as: UInt8.self, repeating: 0, count: 32)
        chainPieces = .allocate(capacity: Self.directPieces)
        chainPieces.initialize(repeating: iovec(), count: Self.directPieces)
        directVectors = .allocate(capacity: Self.directPieces &+ 1)
        directVectors.initialize(repeating: iovec(), count: Self.directPieces &+ 1)
        tunnelInner = PacketBatch(capacity: batchSize, segmentsPerFrame: 1)
        adapted = PacketBatch(capacity: batchSize,
                              segmentsPerFrame: Self.segmentsPerFrame + PacketBatch.segmentsAddedByTagEdit)
        // Touched only when frames are adapted: a switch whose ports all take
        // what they are sent never pays for these pages.
        adaptedSlots = .allocate(byteCount: Self.adaptedSlotCount * Self.adaptedSlotSize, alignment: 4096)
        adaptedLengths = .allocate(capacity: Self.adaptedSlotCount)
        adaptedLengths.initialize(repeating: 0, count: Self.adaptedSlotCount)
        self.sleepTimeoutMilliseconds = sleepTimeoutMilliseconds
        self.idle = idle
        realtimeAllowed = wakePriority == .realtime
        self.id = id
        self.cpu = cpu
        self.batchSize = batchSize
        // A worker that cannot be woken could not be paused: no eventfd, no Ferry.
        do { wakeEvent = try EventFD.create() } catch { preconditionFailure("eventfd for the worker failed: \(error)") }
    }

    deinit {
        destinations.deallocate()
        burstPorts.deallocate()
        capturedReceive.deallocate()
        capturedTransmit.deallocate()
        vlans.deallocate()
        skipLoops.deallocate()
        skipLength.deallocate()
        gathered.deallocate()
        directPrefix.deallocate()
        chainPieces.deallocate()
        directVectors.deallocate()
        adaptedSlots.deallocate()
        adaptedLengths.deallocate()
    }

    /// Segments a burst's frames may use on average (PacketBatch's default).
    static let segmentsPerFrame = 4
    /// Receive queues one worker may poll (the switch refuses a port that would pass it).
    public static let maxSources = 8192

    /// Replaces what the worker polls and where it transmits; safe while running
    /// (applied between bursts). `ports[i]` is switch port i.
    public func configure(ports newPorts: [WorkerPort], sources newSources: [WorkerSource]) {
        let chosen = prepare(ports: newPorts, sources: newSources) { self.forwarder.members(vlan: $0) }
        whilePaused { install(ports: newPorts, sources: chosen) }
    }

    /// `sources` with the direct TAP path chosen for the VLAN membership `members`
    /// will give; off the data path, before the tables are installed.
    func prepare(ports newPorts: [WorkerPort], sources newSources: [WorkerSource],
                 members: (UInt16) -> PortSet) -> [WorkerSource] {
        precondition(newPorts.count <= PortSet.maxPorts)
        precondition(newSources.count <= Self.maxSources)
        var chosen = newSources
        for i in chosen.indices { chosen[i].directPeer = directPeer(of: chosen[i], ports: newPorts, members: members) }
        return chosen
    }

    /// Swaps in tables built by `prepare`. The caller has this worker parked
    /// (or it is not running): nothing is half-built when the next burst reads them.
    func install(ports newPorts: [WorkerPort], sources newSources: [WorkerSource]) {
        ports = ContiguousArray(newPorts)
        sources = ContiguousArray(newSources)
        // Nothing decided for the old port set survives into the new one.
        recent = RecentDecision()
        // SAFETY: both arrays hold maxSources entries (init).
        skipLoops.update(repeating: 0, count: Self.maxSources)
        skipLength.update(repeating: 0, count: Self.maxSources)
        // The sleep scratch still names the old ports' queues: let go of them,
        // so a removed port's descriptors close when the switch drops it; and
        // it must hold every new source without allocating in the data path.
        wakeSources.removeAll()
        wakeSources.reserve(newSources.count)
        pollsAlways = newSources.contains { $0.port.isAlwaysPolled }
        polledARunningGenerator = false
    }

    public func whilePaused(_ change: () -> Void) {
        // The worker itself, or a worker not running, needs no handshake.
        if !running.load(ordering: .acquiring) || threadID.load(ordering: .relaxed) == ferry_gettid() {
            change()
            return
        }
        gateLock.withLock { _ in
            pauseRequested.store(true, ordering: .sequentiallyConsistent)
            EventFD.signal(wakeFD)
            while !parked.load(ordering: .acquiring) && running.load(ordering: .acquiring) { sched_yield() }
            change()
            pauseRequested.store(false, ordering: .releasing)
            while parked.load(ordering: .acquiring) && running.load(ordering: .acquiring) { sched_yield() }
        }
    }

    public func start() {
        running.store(true, ordering: .releasing)
        let box = Unmanaged.passRetained(self)
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { arg in
            let worker = Unmanaged<Worker>.fromOpaque(arg!).takeRetainedValue()
            worker.run()
            return nil
        }, box.toOpaque())
        precondition(rc == 0, "pthread_create failed: \(rc)")
        thread = t
    }

    public func stop() {
        stopRequested.store(true, ordering: .releasing)
        EventFD.signal(wakeFD)
        if let t = thread { pthread_join(t, nil) }
        thread = nil
    }

    private func run() {
        threadID.store(ferry_gettid(), ordering: .relaxed)
        _ = ferry_set_thread_name("ferry-w\(id)")
        // A pin the kernel refuses leaves the worker where it may run anyway:
        // Switch.start checked the mask this thread inherits and logged the CPU.
        if let cpu { _ = ThreadAffinity.pin(to: cpu) } else { allowedCPUs = ThreadAffinity.allowed() }
        let batch = PacketBatch(capacity: batchSize, segmentsPerFrame: Self.segmentsPerFrame)
        var idleStreak = 0
        var idleSince: UInt64 = 0
        // The tables change only while the worker is parked (`install`): held
        // here from one park to the next, they reach each pass as arguments,
        // with no reference counting per pass.
        var sources = self.sources
        var ports = self.ports
        while !stopRequested.load(ordering: .relaxed) {
            if pauseRequested.load(ordering: .relaxed) {
                park()
                sources = self.sources
                ports = self.ports
            }
            if forwardOnce(batch, sources: sources, ports: ports) > 0 {
                busyLoops.addAsOnlyWriter(1)
                idleStreak = 0
                if isRealtime { countRealtimePass(spinning: false) }
                continue
            }
            idleLoops.addAsOnlyWriter(1)
            let spin = idle.spinNanoseconds(afterGuestFrames: heardFromGuest, streaming: lastSleepEndedAtOnce)
            // A spin is done in the fair class: a real-time spin would keep
            // whoever the last frame woke on this CPU (its receiver) waiting.
            if isRealtime { countRealtimePass(spinning: spin != 0) }
            // The clock is read when a spell of empty passes starts and every
            // `idleClockMask + 1` passes of it, never while frames flow; a
            // policy that does not spin sleeps at the first empty pass.
            if idleStreak == 0 && spin != 0 { idleSince = MonotonicClock.nanoseconds() }
            idleStreak &+= 1
            if let spin, spin == 0 || (idleStreak & Self.idleClockMask == 0 && MonotonicClock.nanoseconds() &- idleSince >= spin) {
                // After a wake-up that brought nothing (the timeout), sleep again at the next check.
                if sleepUntilKicked() {
                    idleStreak = 0
                } else {
                    idleStreak = Self.idleClockMask
                }
            } else {
                ferry_cpu_relax()
            }
        }
        running.store(false, ordering: .releasing)
    }

    /// Looks at every source on the next loop (after a wake-up, a new configuration).
    func resetSkips() {
        // Only the sources polled now: a wake-up in a switch of many ports
        // should not write 32 KiB of scratch.
        // SAFETY: sources.count <= maxSources (prepare's precondition), the arrays' length.
        skipLoops.update(repeating: 0, count: sources.count)
        skipLength.update(repeating: 0, count: sources.count)
    }

    private func park() {
        // A real-time worker spinning here would starve the control thread that unparks it, if on this CPU.
        if isRealtime { leaveRealtime() }
        // Release: our last burst's writes are visible to the control thread once it sees `parked`.
        parked.store(true, ordering: .releasing)
        while pauseRequested.load(ordering: .acquiring) { ferry_cpu_relax() }
        parked.store(false, ordering: .releasing)
    }
}
