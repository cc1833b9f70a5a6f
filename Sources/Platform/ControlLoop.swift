import Glibc

/// Something the control thread serves: it names the descriptors to wait on,
/// when it next wants attention without input, and does its work non-blocking.
public protocol ControlLoopClient: AnyObject {
    var pollDescriptors: [Int32] { get }
    /// Descriptors to wait on until they can be written: a client holding output
    /// a peer has not taken yet.
    var pollOutputDescriptors: [Int32] { get }
    func timeout(now: Double) -> Double?
    func service(now: Double)
}

extension ControlLoopClient {
    public var pollOutputDescriptors: [Int32] { [] }
}

/// The control thread's loop: poll every client's descriptors, then let every
/// client do what is due. Clients never block, so one slow peer stalls no one.
public final class ControlLoop {
    private var clients: [ControlLoopClient] = []
    private var stopping = false
    public static let maxWait = 0.25

    public init() {}

    public func add(_ client: ControlLoopClient) { clients.append(client) }
    public func remove(_ client: ControlLoopClient) { clients.removeAll { $0 === client } }
    public func stop() { stopping = true }

    public func run() {
        while !stopping { runOnce() }
    }

    public func runOnce() {
        let now = MonotonicClock.now()
        var wait = Self.maxWait
        var fds: [pollfd] = []
        for c in clients {
            if let t = c.timeout(now: now) { wait = min(wait, t) }
            for fd in c.pollDescriptors { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            for fd in c.pollOutputDescriptors { fds.append(pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)) }
        }
        // Whole milliseconds, rounded up: truncated, the last millisecond before a
        // client's deadline was a poll with no wait, again and again — the control
        // thread spun for up to 1 ms at every deadline (the aging sweep, the rates'
        // sample), on whatever CPU it ran (docs/PERFORMANCE.md, "Session 9: every slow
        // reply accounted for"). A client due now still gets no wait at all.
        let milliseconds = Int32((wait * 1000).rounded(.up))
        // A failed poll (ENOMEM) only ends this wait early: every client is served as after a timeout.
        _ = try? syscall("poll") { poll(&fds, nfds_t(fds.count), milliseconds) }
        let after = MonotonicClock.now()
        // A client may remove another (a port removed from the control socket):
        // one removed during this pass is not served again, not even once.
        for c in clients where clients.contains(where: { $0 === c }) { c.service(now: after) }
    }
}
