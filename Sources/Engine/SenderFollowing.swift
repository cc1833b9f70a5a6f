import Platform

/// Whether a worker that a TAP woke from a sleep moves to the CPU the frame
/// was sent from (`SenderCPUProgram` records it), and where.
///
/// Why: a worker sleeps as a real-time task and so wakes on the CPU it last
/// ran on, while an idle sender (a ping) stays on its own; apart, every hop of
/// a round trip is a wake-up of the other, halted vCPU, which on a VM waits
/// for the hypervisor (92-126 µs a round against ~31 µs together;
/// docs/PERFORMANCE.md, "Session 8: the worker follows the sender"). On the sender's CPU
/// the sender's write wakes the worker there and the answer wakes the sender there.
///
/// The move is a hint, not a pin: the worker's allowed CPUs are given back
/// right after it, so the scheduler may still take a busy worker elsewhere.
/// An operator's `cpus` is a pin and wins: a pinned worker never follows.
public enum SenderFollowing {
    /// A move costs 34-52 µs (median, sched_setaffinity to an idle vCPU on
    /// this VM, tools/affinity-move.c), a round trip apart ~60-90 µs more than
    /// together. Only a worker that slept this long follows: a sender that
    /// writes again within microseconds (a stream) finds the worker awake or
    /// about to be, and moving it onto the sender's CPU at every short sleep
    /// would put the two on one CPU, one waiting for the other.
    public static let minimumSleepNanoseconds: UInt64 = 250_000

    /// How long a worker that decided to move sleeps first. The answer it just
    /// wrote has woken the sender on the CPU it moves to, and a real-time arrival
    /// there preempted the sender before it had read it: 30-40 µs of a first ping,
    /// traced (busybox takes its time after parsing the reply; docs/PERFORMANCE.md,
    /// "Session 9: every slow reply accounted for"). A ping's reader is asleep
    /// again within ~60 µs; its next request comes a millisecond later.
    public static let settleNanoseconds = 200_000

    /// The CPU to move to, decided at the wake-up, or nil to stay. Where the
    /// worker runs is not asked here: it is read once, at the move (`moves(to:from:)`).
    ///
    /// - Parameters:
    ///   - pinned: the operator placed the worker (`cpus`).
    ///   - allowed: the CPUs the worker may run on (nil: unknown).
    ///   - sender: the CPU the last frame into a TAP came from (nil: no program, or no frame yet).
    ///   - slept: how long the sleep that just ended lasted, in nanoseconds.
    public static func destination(pinned: Bool, allowed: CPUSet?, sender: Int?, slept: UInt64) -> Int? {
        guard !pinned, let allowed, let sender, slept >= minimumSleepNanoseconds else { return nil }
        // A sender outside the worker's CPUs (Ferry started under taskset or a
        // cpuset): the operator's placement is kept.
        return allowed.contains(sender) ? sender : nil
    }

    /// Whether a worker running on `runningOn` (nil: unknown) moves to the
    /// `destination` it decided on: not when it is there already, nor when it
    /// cannot tell where it is.
    public static func moves(to destination: Int, from runningOn: Int?) -> Bool {
        guard let runningOn else { return false }
        return runningOn != destination
    }
}
