import VhostUser

/// The data-path gate for a device any worker may touch: every worker may
/// transmit into any port, so a change to what a device's rings point at waits
/// until all workers are parked.
public final class WorkerGroup: DataPathGate, @unchecked Sendable {
    public let workers: [Worker]

    public init(_ workers: [Worker]) { self.workers = workers }

    public func whilePaused(_ change: () -> Void) {
        pause(from: 0, change)
    }

    /// Parks the workers one after the other, each while the earlier ones stay
    /// parked; a worker parks only between bursts, so it holds no transmit lock.
    private func pause(from i: Int, _ change: () -> Void) {
        if i == workers.count {
            change()
            return
        }
        workers[i].whilePaused { pause(from: i + 1, change) }
    }
}
