/// The scheduling class a worker sleeps in, and so how soon it runs when a
/// frame wakes it on a CPU other tasks want: the latency of the first frame
/// after a pause. docs/PERFORMANCE.md has both measured.
public enum WakePriority: String, Sendable, CaseIterable {
    /// The fair class, like every other task: a woken worker waits until the
    /// scheduler lets it preempt whatever runs there, on a busy CPU up to a
    /// time slice (milliseconds).
    case normal
    /// Real-time (SCHED_FIFO, the lowest priority) while it sleeps and for the
    /// short spell of work after a wake-up: it runs at once. A worker that
    /// stays awake longer than `realtimePasses` passes (frames keep coming, or
    /// its idle policy spins) drops back to the fair class until it next
    /// sleeps, so a busy worker never starves the rest of its CPU. Needs
    /// CAP_SYS_NICE or an RLIMIT_RTPRIO of 1; without either the worker stays `normal`.
    case realtime

    public static let `default` = WakePriority.realtime

    /// Passes a woken worker may make as a real-time task: enough for a wake-up's
    /// frames and the empty pass before the next sleep (a few microseconds each),
    /// at most about a millisecond of full bursts.
    public static let realtimePasses = 64
}
