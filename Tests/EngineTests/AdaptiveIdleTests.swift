import Glibc
import Model
import Packets
import Platform
import Ports
import Switching
import TestSupport
import VhostUser
import Virtio
import XCTest

@testable import Engine

/// The worker sleeps when nothing flows and a guest's kick wakes it, with no frame lost.
final class AdaptiveIdleTests: XCTestCase {
    func testAKickWakesASleepingWorkerAndTheFrameIsForwarded() throws {
        let path = "/tmp/ferry-idle-\(getpid()).sock"
        defer { unlink(path) }
        // A sleep timeout far beyond the waits below: only a kick can explain a wake-up.
        let bridge = Bridge(database: ForwardingDatabase(capacity: 64))
        let worker = Worker(id: 0, cpu: nil, batchSize: 32, bridge: bridge, sleepTimeoutMilliseconds: 60_000)
        let (device, vhost, sink) = try guestAndSink(worker, bridge, path: path)
        let fe = try MockFrontEnd(device: device)
        fe.setUp(eventIndex: true)
        worker.start()
        defer { worker.stop() }

        XCTAssertTrue(waitUntil { worker.sleeps.load(ordering: .relaxed) > 0 }, "the idle worker never slept")
        let sleptBefore = worker.sleeps.load(ordering: .relaxed)
        for _ in 0..<3 { fe.tx.offerTX(frame: ethernetFrame(length: 60)) }
        EventFD.signal(fe.kicks[1])
        XCTAssertTrue(waitUntil { sink.counters.snapshot.txPackets == 3 }, "the kick did not wake the worker")
        XCTAssertTrue(waitUntil { worker.sleeps.load(ordering: .relaxed) > sleptBefore }, "it did not sleep again")
        XCTAssertEqual(vhost.counters[0].snapshot.rxPackets, 3)
        XCTAssertEqual(vhost.counters[0].snapshot.totalDrops, 0)
    }

    /// A guest's ring that no front-end has started is skipped like an empty TAP
    /// (it would cost every pass a look); a busy worker still finds it once it runs.
    func testABusyWorkerFindsAGuestWhoseRingStartedWhileItWasSkipped() throws {
        let path = "/tmp/ferry-idle-late-\(getpid()).sock"
        defer { unlink(path) }
        let bridge = Bridge(database: ForwardingDatabase(capacity: 64))
        let worker = Worker(id: 0, cpu: nil, batchSize: 32, bridge: bridge, idle: .poll)
        let (device, vhost, sink) = try guestAndSink(worker, bridge, path: path)
        worker.start()
        defer { worker.stop() }
        XCTAssertFalse(Port.vhost(vhost).receiveQueueRuns(0))
        // Long enough for the skip of the unstarted ring to reach its longest.
        XCTAssertTrue(waitUntil { worker.idleLoops.load(ordering: .relaxed) > 10_000 })
        let fe = try MockFrontEnd(device: device)
        fe.setUp(eventIndex: true)
        XCTAssertTrue(Port.vhost(vhost).receiveQueueRuns(0))
        for _ in 0..<3 { fe.tx.offerTX(frame: ethernetFrame(length: 60)) }
        XCTAssertTrue(waitUntil { sink.counters.snapshot.txPackets == 3 }, "the started ring was never looked at")
        XCTAssertEqual(worker.sleeps.load(ordering: .relaxed), 0, "poll never sleeps, so no wake-up reset the skip")
    }

    /// A skipped TAP is read again after `maxSkip` empty loops or once a batch of frames
    /// has moved, whichever comes first: the frames a worker sends into the kernel can
    /// come back on the TAP faster than 64 busy loops let it read them.
    func testASkipEndsWithinABatchOfFramesMoved() {
        XCTAssertEqual(Worker.loopsSkipped(afterMoving: 0), 1)
        XCTAssertEqual(Worker.loopsSkipped(afterMoving: 32), 9)
        XCTAssertGreaterThan(Worker.loopsSkipped(afterMoving: 256), Worker.maxSkip)
        XCTAssertGreaterThan(Worker.loopsSkipped(afterMoving: 1 << 40), Worker.maxSkip, "no wrap-around")
    }

    func testAPauseWakesASleepingWorker() throws {
        let bridge = Bridge(database: ForwardingDatabase(capacity: 64))
        let worker = Worker(id: 0, cpu: nil, batchSize: 32, bridge: bridge, sleepTimeoutMilliseconds: 60_000)
        worker.start()
        defer { worker.stop() }
        XCTAssertTrue(waitUntil { worker.sleeps.load(ordering: .relaxed) > 0 })
        var changed = false
        worker.whilePaused { changed = true }  // would hang for a minute if the wake-up were lost
        XCTAssertTrue(changed)
    }

    /// `poll` never sleeps; `sleep` and `adaptive` do once nothing flows.
    func testEachIdlePolicySleepsOrNot() throws {
        var workers: [IdlePolicy: Worker] = [:]
        for policy in IdlePolicy.allCases {
            let worker = Worker(id: 0, cpu: nil, batchSize: 32, bridge: Bridge(database: ForwardingDatabase(capacity: 64)),
                                idle: policy, sleepTimeoutMilliseconds: 60_000)
            workers[policy] = worker
            worker.start()
        }
        defer { for w in workers.values { w.stop() } }
        XCTAssertTrue(waitUntil { workers[.sleep]!.sleeps.load(ordering: .relaxed) > 0 }, "sleep never slept")
        XCTAssertTrue(waitUntil { workers[.adaptive]!.sleeps.load(ordering: .relaxed) > 0 }, "adaptive never slept")
        // The poll worker's thread may not have run yet when the other two have slept (2 busy CPUs).
        XCTAssertTrue(waitUntil { workers[.poll]!.idleLoops.load(ordering: .relaxed) > 0 }, "poll never looped")
        XCTAssertEqual(workers[.poll]!.sleeps.load(ordering: .relaxed), 0, "poll slept")
        XCTAssertEqual(workers[.sleep]!.sleeps.load(ordering: .relaxed), 1, "nothing woke it, so it slept once")
    }

    /// `adaptive` spins before it sleeps after frames from a guest's ring
    /// (which need not kick while it spins); after a TAP's frame that woke it
    /// from a sleep that blocked (a ping's, not a stream's) it sleeps at the first
    /// empty pass, as `sleep` does. Needs root and /dev/net/tun.
    func testAdaptiveSpinsAfterAGuestsFramesAndNotAfterATaps() throws {
        try NetworkSandbox.requireTapSupport()
        let path = "/tmp/ferry-idle-spin-\(getpid()).sock"
        defer { unlink(path) }
        let bridge = Bridge(database: ForwardingDatabase(capacity: 64))
        let worker = Worker(id: 0, cpu: nil, batchSize: 32, bridge: bridge, idle: .adaptive,
                            sleepTimeoutMilliseconds: 60_000)
        let (tap, removeTap) = try makeTap("ferryid")
        defer { removeTap() }
        let log = CapturedLog()
        let device = VhostDevice(name: "guest", gate: worker, logger: log.logger)
        let vhost = VhostPort(endpoint: try VhostUserEndpoint(path: path, mode: .server, device: device, logger: log.logger))
        let sink = SinkPort()
        bridge.setMembership([.access(1), .access(1), .access(1)])
        worker.configure(ports: [WorkerPort(port: .vhost(vhost), vlan: .access(1), transmitQueue: 0),
                                 WorkerPort(port: .tap(tap), vlan: .access(1), transmitQueue: 0),
                                 WorkerPort(port: .sink(sink), vlan: .access(1), transmitQueue: 0)],
                         sources: [WorkerSource(index: 0, port: .vhost(vhost), queue: 0),
                                   WorkerSource(index: 1, port: .tap(tap), queue: 0)])
        let fe = try MockFrontEnd(device: device)
        fe.setUp(eventIndex: true)
        let kernel = try PacketSocket(interface: tap.device.index, ignoreOutgoing: true)
        worker.start()
        defer { worker.stop() }
        XCTAssertTrue(waitUntil { worker.sleeps.load(ordering: .relaxed) > 0 }, "the idle worker never slept")

        /// Empty passes per sleep while `send` delivers `frames` frames to the sink.
        func emptyPassesPerSleep(frames: UInt64, _ send: () throws -> Void) rethrows -> Double {
            let delivered = sink.counters.snapshot.txPackets
            let sleeps = worker.sleeps.load(ordering: .relaxed), empty = worker.idleLoops.load(ordering: .relaxed)
            try send()
            XCTAssertTrue(waitUntil { sink.counters.snapshot.txPackets >= delivered + frames }, "frames lost")
            XCTAssertTrue(waitUntil { worker.sleeps.load(ordering: .relaxed) > sleeps }, "it did not sleep again")
            // The sleep counter moves before the sleep; its empty passes are all counted by now.
            let slept = worker.sleeps.load(ordering: .relaxed) - sleeps
            return Double(worker.idleLoops.load(ordering: .relaxed) - empty) / Double(slept)
        }
        // One frame: a second one arriving just as the worker goes back to sleep
        // would end that sleep at once, a stream (`testASleepThatEndsAtOnceMarksAStream`).
        let afterTap = try emptyPassesPerSleep(frames: 1) {
            try kernel.send(ethernetFrame(length: 60))
        }
        XCTAssertEqual(afterTap, 1, "after a TAP's frames it sleeps at the first empty pass")
        let afterGuest = emptyPassesPerSleep(frames: 3) {
            for _ in 0..<3 { fe.tx.offerTX(frame: ethernetFrame(length: 60, seed: 1)) }
            EventFD.signal(fe.kicks[1])
        }
        // The clock is read every 16 empty passes: a spin makes at least 16.
        XCTAssertGreaterThanOrEqual(afterGuest, 16, "after a guest's frames it spins before sleeping")
    }

    /// A sleep that ends at once, a frame already waiting on a descriptor, marks
    /// a stream: `adaptive` then spins `streamSpin` before the next sleep, so the
    /// sender's next batch finds the worker awake instead of paying a wake-up.
    /// A sleep that blocked (here until its timeout) does not. The worker is not
    /// started: the test thread sleeps as its thread would. Needs root and /dev/net/tun.
    func testASleepThatEndsAtOnceMarksAStream() throws {
        try NetworkSandbox.requireTapSupport()
        let (worker, tap, removeTap) = try tapWorker("ferryst")
        defer { removeTap() }
        func spinBeforeNextSleep() -> UInt64? {
            worker.idle.spinNanoseconds(afterGuestFrames: false, streaming: worker.lastSleepEndedAtOnce)
        }

        XCTAssertFalse(worker.sleepUntilKicked(), "nothing waits: the sleep blocks until its timeout")
        XCTAssertFalse(worker.lastSleepEndedAtOnce)
        XCTAssertEqual(spinBeforeNextSleep(), 0, "after a sleep that blocked, none")

        let kernel = try PacketSocket(interface: tap.device.index, ignoreOutgoing: true)
        try kernel.send(ethernetFrame(length: 60))
        // The frame stays in the TAP (nothing reads it), so every sleep ends at once; one
        // of three is enough (the test thread may lose its CPU inside the first).
        var endedAtOnce = false
        for _ in 0..<3 where !endedAtOnce {
            XCTAssertTrue(worker.sleepUntilKicked(), "the waiting frame ends the sleep")
            endedAtOnce = worker.lastSleepEndedAtOnce
        }
        XCTAssertTrue(endedAtOnce, "a sleep with a frame already waiting did not end at once")
        XCTAssertEqual(spinBeforeNextSleep(), IdlePolicy.streamSpin, "after it, a stream's spin")
        XCTAssertEqual(IdlePolicy.sleep.spinNanoseconds(afterGuestFrames: false, streaming: true), 0,
                       "`sleep` never spins")
    }

    /// A worker that decided to follow a TAP's sender to another CPU sleeps
    /// `SenderFollowing.settleNanoseconds` first and moves only if nothing came
    /// (the sender, woken on that CPU by the answer, is left to read it); a frame
    /// meanwhile ends that sleep with no move. The test thread plays the worker.
    /// Needs root, /dev/net/tun and two CPUs.
    func testAMoveToTheSendersCPUWaitsASettlingSleep() throws {
        try NetworkSandbox.requireTapSupport()
        guard let allowed = ThreadAffinity.allowed(), let here = ThreadAffinity.currentCPU(),
              let there = (0..<1024).first(where: { $0 != here && allowed.contains($0) }) else {
            return XCTFail("needs two CPUs this thread may run on")
        }
        defer { _ = ThreadAffinity.allow(allowed) }
        let (worker, tap, removeTap) = try tapWorker("ferrymv")
        defer { removeTap() }
        worker.allowedCPUs = allowed

        // Held on one CPU, so that the scheduler cannot make the decision moot meanwhile.
        XCTAssertNil(ThreadAffinity.pin(to: here))
        // A frame waiting: the settling sleep ends at once, and the worker stays.
        let kernel = try PacketSocket(interface: tap.device.index, ignoreOutgoing: true)
        try kernel.send(ethernetFrame(length: 60))
        worker.senderCPUToFollow = there
        XCTAssertTrue(worker.sleepUntilKicked(), "the waiting frame ends the settling sleep")
        XCTAssertEqual(worker.senderMoves.load(ordering: .relaxed), 0, "a frame came: no move yet")
        try NetworkSandbox.drain(tap.device)

        // Nothing waiting: the settling sleep times out, then the move (which frees the thread again).
        worker.senderCPUToFollow = there
        XCTAssertFalse(worker.sleepUntilKicked(), "nothing came while the sender settled")
        XCTAssertEqual(worker.senderMoves.load(ordering: .relaxed), 1, "then the worker moved")
        XCTAssertNil(worker.senderCPUToFollow)

        // Already on the sender's CPU: nothing pending, a plain sleep.
        XCTAssertNil(ThreadAffinity.pin(to: there))
        worker.senderCPUToFollow = there
        XCTAssertFalse(worker.sleepUntilKicked())
        XCTAssertNil(worker.senderCPUToFollow)
        XCTAssertEqual(worker.senderMoves.load(ordering: .relaxed), 1, "no second move")
    }

    /// A `realtime` worker sleeps as a SCHED_FIFO task, so the frame that wakes it
    /// runs it at once; a `normal` one stays in the fair class; a paused one
    /// leaves real-time, so that it never spins ahead of the thread that unpauses it.
    func testARealtimeWorkerSleepsInTheRealtimeClassAndLeavesItWhenPaused() throws {
        var workers: [WakePriority: Worker] = [:]
        for priority in WakePriority.allCases {
            let worker = Worker(id: 0, cpu: nil, batchSize: 32, bridge: Bridge(database: ForwardingDatabase(capacity: 64)),
                                idle: .sleep, wakePriority: priority, sleepTimeoutMilliseconds: 60_000)
            workers[priority] = worker
            worker.start()
        }
        defer { for w in workers.values { w.stop() } }
        for worker in workers.values {
            XCTAssertTrue(waitUntil { worker.sleeps.load(ordering: .relaxed) > 0 }, "never slept")
        }
        func policy(_ priority: WakePriority) -> Int32 { sched_getscheduler(workers[priority]!.threadID.load(ordering: .relaxed)) }
        XCTAssertEqual(policy(.realtime), SCHED_FIFO,
                       "a realtime worker sleeps as SCHED_FIFO (refused without CAP_SYS_NICE: run the tests as root)")
        XCTAssertEqual(policy(.normal), SCHED_OTHER)
        var classWhilePaused: Int32 = -1
        workers[.realtime]!.whilePaused { classWhilePaused = policy(.realtime) }
        XCTAssertEqual(classWhilePaused, SCHED_OTHER, "a parked worker spins in the fair class")
        XCTAssertTrue(waitUntil { policy(.realtime) == SCHED_FIFO }, "back to sleep, real-time again")
    }

    /// A one-queue TAP named from `prefix`, IPv6 off (nothing of the kernel's own
    /// arrives on it), and what closes and removes it.
    /// An `adaptive` worker (fair class, 20-ms sleeps) polling one fresh TAP; not started.
    private func tapWorker(_ prefix: String) throws -> (Worker, TapPort, () -> Void) {
        let bridge = Bridge(database: ForwardingDatabase(capacity: 64))
        let worker = Worker(id: 0, cpu: nil, batchSize: 32, bridge: bridge, idle: .adaptive,
                            wakePriority: .normal, sleepTimeoutMilliseconds: 20)
        let (tap, removeTap) = try makeTap(prefix)
        bridge.setMembership([.access(1)])
        worker.configure(ports: [WorkerPort(port: .tap(tap), vlan: .access(1), transmitQueue: 0)],
                         sources: [WorkerSource(index: 0, port: .tap(tap), queue: 0)])
        return (worker, tap, removeTap)
    }

    private func makeTap(_ prefix: String) throws -> (TapPort, () -> Void) {
        let name = NetworkSandbox.interfaceName(prefix, "0")
        NetworkSandbox.removeInterface(name)
        let tap = try TapPort(name: name, queues: 1, mtu: 1500, batchCapacity: 64)
        let remove = {
            tap.device.close()
            NetworkSandbox.removeInterface(name)
        }
        do { try NetworkSandbox.disableIPv6(name) } catch {
            remove()
            throw error
        }
        return (tap, remove)
    }

    /// A guest port (port 0) and a sink (port 1) in VLAN 1, the worker's two sources.
    private func guestAndSink(_ worker: Worker, _ bridge: Bridge, path: String) throws
        -> (VhostDevice, VhostPort, SinkPort) {
        let log = CapturedLog()
        let device = VhostDevice(name: "guest", gate: worker, logger: log.logger)
        let vhost = VhostPort(endpoint: try VhostUserEndpoint(path: path, mode: .server, device: device, logger: log.logger))
        let sink = SinkPort()
        bridge.setMembership([.access(1), .access(1)])
        worker.configure(ports: [WorkerPort(port: .vhost(vhost), vlan: .access(1), transmitQueue: 0),
                                 WorkerPort(port: .sink(sink), vlan: .access(1), transmitQueue: 0)],
                         sources: [WorkerSource(index: 0, port: .vhost(vhost), queue: 0),
                                   WorkerSource(index: 1, port: .sink(sink), queue: 0)])
        return (device, vhost, sink)
    }

    /// Polls `condition` for up to 5 s; a functional bound, not a measurement.
    private func waitUntil(_ condition: () -> Bool) -> Bool {
        for _ in 0..<500 {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }
}
