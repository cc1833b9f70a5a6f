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

    /// The CPU to move to, or nil to stay.
    ///
    /// - Parameters:
    ///   - pinned: the operator placed the worker (`cpus`).
    ///   - allowed: the CPUs the worker may run on (nil: unknown).
    ///   - sender: the CPU the last frame into a TAP came from (nil: no program, or no frame yet).
    ///   - runningOn: the CPU the worker runs on now (nil: unknown).
    ///   - slept: how long the sleep that just ended lasted, in nanoseconds.
    public static func destination(pinned: Bool, allowed: CPUSet?, sender: Int?, runningOn: Int?,
                                   slept: UInt64) -> Int? {
        guard !pinned, let allowed, let sender, let runningOn else { return nil }
        guard slept >= minimumSleepNanoseconds, sender != runningOn else { return nil }
        // A sender outside the worker's CPUs (Ferry started under taskset or a
        // cpuset): the operator's placement is kept.
        return allowed.contains(sender) ? sender : nil
    }
}
