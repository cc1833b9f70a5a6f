import CFerry
import Model
import Packets
import Platform
import Ports

/// Idle: a worker busy-polls while frames flow; after its policy's spin
/// without a frame (`IdlePolicy`) it asks its ports what to wait on
/// (`WakeSources`: descriptors readable while a frame waits, rings that must
/// ask their driver to kick first) and sleeps in `poll` until one of them, or
/// its own wake eventfd (a pause, a stop), says so.
extension Worker {
    /// Empty passes between looks at the clock, minus one (a power of two):
    /// a look costs a vDSO call, and a pass over many ports a few microseconds.
    static let idleClockMask = 15

    /// Sleeps until a source may have a frame; false when the sleep ended on
    /// its timeout with nothing to report, so the caller may go straight back to sleep.
    func sleepUntilKicked() -> Bool {
        // A source that cannot be waited for: nothing to gather, the worker polls on.
        if pollsAlways || polledARunningGenerator { return true }
        // A move to a TAP sender's CPU waits a short sleep: the answer just written
        // has woken the sender there (`SenderFollowing.settleNanoseconds`). Already
        // there (nearly every time), nothing is pending.
        let moving = senderCPUToFollow.map { SenderFollowing.moves(to: $0, from: ThreadAffinity.currentCPU()) } ?? false
        if !moving { senderCPUToFollow = nil }
        wakeSources.removeAll()
        for source in sources {
            guard source.port.addWakeSources(queue: source.queue, to: &wakeSources) else { return true }
        }
        var woken = true
        if wakeSources.arm(wakeDescriptor: wakeFD) && !pauseRequested.load(ordering: .sequentiallyConsistent) {
            if realtimeAllowed && !isRealtime { enterRealtime() }
            passesSinceWake = 0
            heardFromGuest = false
            sleeps.addAsOnlyWriter(1)
            let fellAsleep = MonotonicClock.nanoseconds()
            woken = moving ? wakeSources.wait(timeoutNanoseconds: SenderFollowing.settleNanoseconds)
                : wakeSources.wait(timeoutMilliseconds: sleepTimeoutMilliseconds)
            let slept = MonotonicClock.nanoseconds() &- fellAsleep
            lastSleepEndedAtOnce = slept < IdlePolicy.unblockedSleep
            asleepNanoseconds.addAsOnlyWriter(slept)
            if wakeSources.wokenByTap { followSender(afterSleeping: slept) }
            // Whatever woke us, look everywhere at once rather than after a skip.
            resetSkips()
        }
        wakeSources.disarm()
        // Nothing came while the sender took its answer: now the move, then (the
        // caller's next empty pass) the sleep. A frame meanwhile decided again.
        if moving && !woken { moveToSenderBeforeSleeping() }
        return woken
    }

    /// Wakes as a real-time task from now on (`WakePriority.realtime`); a
    /// refusal is final (the switch logged it when it started).
    func enterRealtime() {
        if ThreadScheduling.set(realtime: true) == nil {
            isRealtime = true
        } else {
            realtimeAllowed = false
        }
    }

    /// One more pass as a real-time task: the worker returns to the fair
    /// class when it starts to spin or has been awake for
    /// `WakePriority.realtimePasses` passes, and becomes real-time again when it next sleeps.
    @inline(__always)
    func countRealtimePass(spinning: Bool) {
        passesSinceWake &+= 1
        if spinning || passesSinceWake >= WakePriority.realtimePasses { leaveRealtime() }
    }

    func leaveRealtime() {
        _ = ThreadScheduling.set(realtime: false)
        isRealtime = false
    }
}
