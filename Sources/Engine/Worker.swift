import CFerry
import Glibc
import Packets
import Ports
import Synchronization
import Platform
import VhostUser
import Virtio

/// One direction of traffic a worker moves: frames pulled from a port queue
/// are pushed to a queue of another port.
public struct ForwardingPath {
    public let source: Port
    public let sourceQueue: Int
    public let destination: Port
    public let destinationQueue: Int
    /// A generator emits only what the destination has room for, so `count=N`
    /// means N frames offered to a port that can take them, not N frames into the void.
    public let waitsForDestination: Bool

    public init(source: Port, sourceQueue: Int, destination: Port, destinationQueue: Int) {
        self.source = source
        self.sourceQueue = sourceQueue
        self.destination = destination
        self.destinationQueue = destinationQueue
        if case .gen = source { waitsForDestination = true } else { waitsForDestination = false }
    }
}

/// A data-path thread: polls its paths in bursts and never blocks, allocates
/// or locks while doing so. The control plane changes what the worker reads
/// only while the worker is parked (`whilePaused`), so the burst loop needs
/// no lock: one relaxed load per loop tells it to park.
public final class Worker: DataPathGate, @unchecked Sendable {
    public let id: Int
    public let cpu: Int?
    public let batchSize: Int
    var paths: [ForwardingPath] = []

    let pauseRequested = Atomic<Bool>(false)
    private let parked = Atomic<Bool>(false)
    private let stopRequested = Atomic<Bool>(false)
    private let running = Atomic<Bool>(false)
    private let gateLock = Mutex<Void>(())
    private var thread: pthread_t?
    private let threadID = Atomic<Int32>(0)

    /// Loops that moved frames, and loops that found none: the busy/idle ratio.
    public let busyLoops = Atomic<UInt64>(0)
    public let idleLoops = Atomic<UInt64>(0)
    /// Times the worker went to sleep waiting for a kick.
    public let sleeps = Atomic<UInt64>(0)
    /// Wakes a sleeping worker for the control plane (a pause, a stop).
    let wakeFD: Int32
    /// Scratch space for going to sleep, kept so that sleeping allocates nothing.
    var sleepQueues: [SplitVirtqueue] = []
    var sleepDescriptors: [pollfd] = []

    /// How long a sleeping worker waits before looking around anyway.
    let sleepTimeoutMilliseconds: Int32

    public init(id: Int, cpu: Int?, batchSize: Int, sleepTimeoutMilliseconds: Int32 = 100) {
        precondition((1...1024).contains(batchSize))
        self.sleepTimeoutMilliseconds = sleepTimeoutMilliseconds
        self.id = id
        self.cpu = cpu
        self.batchSize = batchSize
        // A worker that cannot be woken could not be paused: no eventfd, no Ferry.
        self.wakeFD = (try? EventFD.create().release()) ?? -1
        precondition(wakeFD >= 0, "eventfd for the worker failed")
        sleepQueues.reserveCapacity(64)
        sleepDescriptors.reserveCapacity(65)
    }

    deinit { close(wakeFD) }

    /// Replaces the paths; safe while running (applied between bursts).
    public func setPaths(_ newPaths: [ForwardingPath]) {
        whilePaused { paths = newPaths }
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
        if let cpu { _ = ferry_set_affinity(Int32(cpu)) }
        let batch = PacketBatch(capacity: batchSize)
        var idleStreak = 0
        while !stopRequested.load(ordering: .relaxed) {
            if pauseRequested.load(ordering: .relaxed) { park() }
            if forwardOnce(batch) > 0 {
                busyLoops.add(1, ordering: .relaxed)
                idleStreak = 0
            } else {
                idleLoops.add(1, ordering: .relaxed)
                idleStreak &+= 1
                if idleStreak >= Self.idleLoopsBeforeSleep {
                    idleStreak = 0
                    sleepUntilKicked()
                } else {
                    ferry_cpu_relax()
                }
            }
        }
        running.store(false, ordering: .releasing)
    }

    private func park() {
        // Release: our last burst's writes are visible to the control thread once it sees `parked`.
        parked.store(true, ordering: .releasing)
        while pauseRequested.load(ordering: .acquiring) { ferry_cpu_relax() }
        parked.store(false, ordering: .releasing)
    }

    /// One pass over every path: pull a burst, push it on, give the buffers back.
    @inline(__always)
    func forwardOnce(_ batch: PacketBatch) -> Int {
        var moved = 0
        var i = 0
        let count = paths.count
        while i < count {
            moved &+= Self.forward(paths[i], batch)
            i &+= 1
        }
        return moved
    }

    @inlinable
    static func forward(_ path: ForwardingPath, _ batch: PacketBatch) -> Int {
        batch.reset()
        if path.waitsForDestination {
            let room = path.destination.room(queue: path.destinationQueue)
            if room == 0 { return 0 }
            if room < batch.limit { batch.limit = room }
        }
        let n = path.source.pull(queue: path.sourceQueue, into: batch)
        if n == 0 { return 0 }
        if batch.count > 0 { path.destination.push(queue: path.destinationQueue, from: batch) }
        path.source.release(queue: path.sourceQueue)
        return n
    }
}
