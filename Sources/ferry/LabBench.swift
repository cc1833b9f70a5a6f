import ControlProtocol
import Engine
import Foundation
import Packets
import Platform
import Ports
import Synchronization

/// The generator and the analyser `ferry lab` measures with, inside a running switch:
/// one trial at a time, each a count of frames at a rate (or for a time as fast as the
/// generator goes), then a wait until nothing more arrives, then the difference of the
/// counters before and after. Runs on the lab's thread; the workers and the control thread
/// go on; everything read or written across them is an atomic.
final class LabBench {
    let generator: GenPort
    let analyser: TrafficAnalyser
    let flags: LabFlags
    /// Called about four times a second during a trial: the rate so far, the loss so far, seconds elapsed.
    var onProgress: (_ purpose: String, _ offeredPPS: Double, _ loss: Double, _ elapsed: Double) -> Void = { _, _, _, _ in }
    /// Least time to wait after the last frame was sent for frames in flight (a guest's rings).
    let drain: Double
    /// The loops the switch's workers have made so far: a spell in which the sink's count did
    /// not move says the frames stopped coming only if the workers ran during it.
    let workerLoops: () -> UInt64
    /// Every port's drops so far, by port name and reason.
    let portDrops: () -> [String: [String: UInt64]]

    init(generator: GenPort, analyser: TrafficAnalyser, flags: LabFlags, drain: Double = 0.2,
         portDrops: @escaping () -> [String: [String: UInt64]] = { [:] }, workerLoops: @escaping () -> UInt64) {
        self.generator = generator
        self.analyser = analyser
        self.flags = flags
        self.drain = drain
        self.portDrops = portDrops
        self.workerLoops = workerLoops
    }

    /// One trial: `rate` frames per second (nil: as fast as the generator goes) for `duration` seconds.
    func trial(_ purpose: String, rate: Double?, duration: Double) -> LabResult.Trial {
        let sentBefore = generator.sent
        let laggedBefore = generator.laggedFrames
        let before = analyser.snapshot
        let dropsBefore = portDrops()
        let count = rate.map { UInt64(max(1, ($0 * duration).rounded())) }
        generator.startTrial(framesPerSecond: rate, count: count)
        let start = MonotonicClock.now()
        // A rate the generator cannot keep up with still ends: at twice the time it should take.
        let deadline = start + (rate == nil ? duration : duration * 2 + 1)
        while true {
            Thread.sleep(forTimeInterval: 0.05)
            let now = MonotonicClock.now()
            let sent = generator.sent &- sentBefore
            let received = analyser.snapshot.stamped &- before.stamped
            let lossSoFar = sent == 0 ? 0 : Double(sent &- min(sent, received)) / Double(sent)
            onProgress(purpose, Double(sent) / max(now - start, 1e-3), lossSoFar, now - start)
            if rate != nil && generator.isFinished { break }
            if now >= deadline || flags.interrupted.load(ordering: .relaxed) {
                generator.startTrial(framesPerSecond: 0, count: 0)
                break
            }
        }
        // Frames in flight: wait at least `drain`, then until the count stops moving while the
        // workers run (at most 2 s). A worker descheduled for 50 ms on a busy machine left the
        // frames it had not yet read to be counted lost here, and received in the next trial.
        Thread.sleep(forTimeInterval: drain)
        var last = analyser.snapshot.stamped
        var loops = workerLoops()
        for _ in 0..<40 {
            Thread.sleep(forTimeInterval: 0.05)
            let now = analyser.snapshot.stamped
            let loopsNow = workerLoops()
            if now == last && loopsNow != loops { break }
            last = now
            loops = loopsNow
        }
        let after = analyser.snapshot
        let drops = Self.increase(from: dropsBefore, to: portDrops())
        let sent = generator.sent &- sentBefore
        let received = after.stamped &- before.stamped
        let span = generator.trialSpan
        var seconds = span.last > span.first ? Double(span.last - span.first) / 1e9 : 0
        if let rate, rate > 0 { seconds += 1 / rate }  // the last burst's own share of the time
        if seconds <= 0 { seconds = duration }
        let latency = after.latency.since(before.latency)
        let lost = sent > received ? sent - received : 0
        return LabResult.Trial(
            purpose: purpose, requestedPPS: rate, offeredPPS: Double(sent) / seconds,
            receivedPPS: Double(received) / seconds, offeredBPS: Double(sent) / seconds * generator.meanFrameSize * 8,
            sent: sent, received: received, lost: lost, loss: sent == 0 ? 0 : Double(lost) / Double(sent),
            reordered: after.reordered &- before.reordered, duplicates: after.duplicates &- before.duplicates,
            lagged: generator.laggedFrames &- laggedBefore, seconds: (seconds * 1000).rounded() / 1000,
            latency: AnalysisReport.latency(latency),
            histogram: latency.nonEmptyBuckets.map { [$0.upTo, $0.count] }, drops: drops)
    }

    /// The drops counted between two readings, leaving out ports and reasons that did not move.
    static func increase(from before: [String: [String: UInt64]], to after: [String: [String: UInt64]])
        -> [String: [String: UInt64]] {
        var moved: [String: [String: UInt64]] = [:]
        for (port, reasons) in after {
            for (reason, count) in reasons {
                let was = before[port]?[reason] ?? 0
                if count > was { moved[port, default: [:]][reason] = count &- was }
            }
        }
        return moved
    }
}

/// What the lab's thread, the control thread and the signal handler tell each other.
final class LabFlags: Sendable {
    /// SIGINT or SIGTERM came: the trial under way stops, the table shows what ran.
    let interrupted = Atomic<Bool>(false)
    /// The control loop returned: the switch may stop.
    let controlLoopEnded = Atomic<Bool>(false)
}
