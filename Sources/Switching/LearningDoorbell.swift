import Glibc
import Platform
import Synchronization

/// Wakes the database's writer when a worker queued something to learn.
///
/// Workers ring at most once per burst, and only the first ring after the
/// writer last answered writes the eventfd, so a flood of new addresses costs
/// one syscall per writer wake-up, not one per frame.
public final class LearningDoorbell: @unchecked Sendable {
    /// Readable while a ring is unanswered; the writer polls it.
    public let descriptor: Int32
    @usableFromInline let rung = Atomic<Bool>(false)

    /// Without an eventfd the writer could not be woken: no eventfd, no Ferry
    /// (as for the workers' wake descriptors).
    public init() {
        descriptor = (try? EventFD.create().release()) ?? -1
        precondition(descriptor >= 0, "eventfd for the learning doorbell failed")
    }

    deinit { close(descriptor) }

    @inlinable
    public func ring() {
        if !rung.exchange(true, ordering: .acquiringAndReleasing) { EventFD.signal(descriptor) }
    }

    /// The writer, before it drains the queues: a ring after this writes the eventfd again.
    public func answer() {
        rung.store(false, ordering: .sequentiallyConsistent)
        _ = EventFD.drain(descriptor)
    }
}
