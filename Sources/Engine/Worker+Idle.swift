import CFerry
import Platform
import Ports

/// Adaptive idle: a worker busy-polls while frames flow, and after a spell of
/// empty loops asks its ports what to wait on (`WakeSources`: descriptors
/// readable while a frame waits, rings that must ask their driver to kick
/// first) and sleeps in `poll` until one of them, or its own wake eventfd (a
/// pause, a stop), says so.
extension Worker {
    /// About a few hundred microseconds of empty loops before sleeping.
    static let idleLoopsBeforeSleep = 4096

    func sleepUntilKicked() {
        wakeSources.removeAll()
        for source in sources {
            guard source.port.addWakeSources(queue: source.queue, to: &wakeSources) else { return }
        }
        if wakeSources.arm(wakeDescriptor: wakeFD) && !pauseRequested.load(ordering: .sequentiallyConsistent) {
            sleeps.add(1, ordering: .relaxed)
            let fellAsleep = MonotonicClock.nanoseconds()
            wakeSources.wait(timeoutMilliseconds: sleepTimeoutMilliseconds)
            asleepNanoseconds.add(MonotonicClock.nanoseconds() &- fellAsleep, ordering: .relaxed)
            // Whatever woke us, look everywhere at once rather than after a skip.
            resetSkips()
        }
        wakeSources.disarm()
    }
}
