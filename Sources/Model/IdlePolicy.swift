/// How a worker waits when its queues are empty: the trade between the
/// latency of the first frame after a quiet spell and the CPU an idle worker
/// burns. docs/PERFORMANCE.md has each one's latency and CPU, measured.
public enum IdlePolicy: String, Sendable, CaseIterable {
    /// Never sleeps: a frame waits at most one pass while the worker has its
    /// CPU, and the worker takes a whole core whether frames flow or not. On a
    /// CPU it shares, the scheduler preempts a spinning worker for whole time
    /// slices, which a sleeping one is spared (docs/PERFORMANCE.md).
    case poll
    /// After frames from a guest's ring, busy-polls for `adaptiveSpin` before
    /// it sleeps, with the guests' notifications still suppressed: a guest
    /// that keeps sending finds the worker awake and need not kick (a VM exit
    /// per burst; a TCG guest's TCP send took 3-4x as long without the spin).
    /// After frames only from
    /// descriptor-backed ports (TAP, AF_PACKET, AF_XDP, vxlan) it sleeps at
    /// once, as `sleep` does: a spin would only keep the answer's receiver
    /// waiting behind the worker on a shared CPU — unless the last sleep ended
    /// at once, a frame already waiting: then frames stream in, and it spins
    /// `streamSpin` first. Each sleep that blocks is a wake-up the sender's
    /// CPU pays for (the kernel wakes the worker in the sender's context), and
    /// between a stream's bursts that was thousands a second (W5rx,
    /// docs/PERFORMANCE.md, "W5rx: the wake-ups the sender pays"). The spin
    /// is done in the fair class (`WakePriority`).
    case adaptive
    /// Sleeps as soon as a pass finds nothing: the least CPU, and a wake-up in
    /// front of every frame that follows a pause, answers included — which a
    /// `realtime` wake makes a few microseconds on a busy CPU — and a guest
    /// kicks for nearly every burst it sends (notifications are re-armed at
    /// every empty pass).
    case sleep

    /// A switch for VMs keeps their throughput (the spin after guest frames)
    /// and its TAPs their latency (none after theirs): docs/PERFORMANCE.md.
    public static let `default` = IdlePolicy.adaptive

    /// Long enough for an answer that takes a moment (a guest's) to find the
    /// worker awake; a namespace answers a frame written into its TAP inside
    /// that write, and needs no spin (docs/PERFORMANCE.md).
    public static let adaptiveSpin: UInt64 = 100_000

    /// Long enough to bridge the gaps inside a stream from a socket (a
    /// sender's next batch), far shorter than a ping's round trip: a ping's
    /// sleeps block, and never start it.
    public static let streamSpin: UInt64 = 20_000

    /// A sleep shorter than this ended without blocking: a frame was already
    /// waiting when it began. A wake-up from a blocked sleep takes longer
    /// (the waker's IPI, a context switch).
    public static let unblockedSleep: UInt64 = 3_000

    /// How long an empty worker spins before it sleeps, in nanoseconds; nil:
    /// never sleeps. `guestFrames`: frames came from a guest's ring since the
    /// worker last woke; `streaming`: its last sleep ended at once (shorter
    /// than `unblockedSleep`).
    @inline(__always)
    public func spinNanoseconds(afterGuestFrames guestFrames: Bool, streaming: Bool = false) -> UInt64? {
        switch self {
        case .poll: nil
        case .adaptive: guestFrames ? Self.adaptiveSpin : streaming ? Self.streamSpin : 0
        case .sleep: 0
        }
    }
}
