/// How a worker waits when its queues are empty: the trade between the
/// latency of the first frame after a quiet spell and the CPU an idle worker
/// burns. docs/PERFORMANCE.md has each one's latency and CPU, measured.
public enum IdlePolicy: String, Sendable, CaseIterable {
    /// Never sleeps: a frame waits at most one pass while the worker has its
    /// CPU, and the worker takes a whole core whether frames flow or not. On a
    /// CPU it shares, the scheduler preempts a spinning worker for whole time
    /// slices, which a sleeping one is spared (docs/PERFORMANCE.md).
    case poll
    /// Busy-polls for `adaptiveSpin` after the last frame, then sleeps until a
    /// queue has one: the answer to a frame just forwarded (a ping's reply, a
    /// TCP acknowledgement from a local peer) finds the worker awake, and a
    /// quiet switch sleeps. The spin is done in the fair class
    /// (`WakePriority`), where the receiver of the last frame may have to wait for it.
    case adaptive
    /// Sleeps as soon as a pass finds nothing: the least CPU, and a wake-up in
    /// front of every frame that follows a pause, answers included — which a
    /// `realtime` wake makes a few microseconds on a busy CPU.
    case sleep

    /// `sleep` had the lowest ping latency with real-time wake-ups, but it
    /// re-arms notifications at every empty pass, so a guest kicks for nearly
    /// every burst it sends: a TCG guest's TCP send took 3-4x as long
    /// (docs/PERFORMANCE.md). A switch for VMs keeps their throughput by default.
    public static let `default` = IdlePolicy.adaptive

    /// Long enough for an answer that takes a moment (a guest's) to find the
    /// worker awake; a namespace answers a frame written into its TAP inside
    /// that write, and needs no spin (docs/PERFORMANCE.md).
    public static let adaptiveSpin: UInt64 = 100_000

    /// How long an empty worker spins before it sleeps, in nanoseconds; nil: never sleeps.
    public var spinNanoseconds: UInt64? {
        switch self {
        case .poll: nil
        case .adaptive: Self.adaptiveSpin
        case .sleep: 0
        }
    }
}
