import Glibc
import Platform
import Synchronization

/// Wakes the database's writer when a worker queued something to learn.
///
/// Workers ring at most once per burst, and only the first ring after the
/// writer last answered writes the eventfd, so a flood of new addresses costs
/// one syscall per writer wake-up, not one per frame.
public final class LearningDoorbell: @unchecked Sendable {
    @usableFromInline let event: FileDescriptor
    @usableFromInline let rung = Atomic<Bool>(false)

    /// Readable while a ring is unanswered; the writer polls it.
    public var descriptor: Int32 { event.rawValue }

    /// Without an eventfd the writer could not be woken: no eventfd, no Ferry
    /// (as for the workers' wake descriptors).
    public init() {
        do { event = try EventFD.create() } catch { preconditionFailure("eventfd for the learning doorbell failed: \(error)") }
    }

    @inlinable
    public func ring() {
        if !rung.exchange(true, ordering: .acquiringAndReleasing) { EventFD.signal(event.rawValue) }
    }

    /// The writer, before it drains the queues: a ring after this writes the eventfd again.
    public func answer() {
        rung.store(false, ordering: .sequentiallyConsistent)
        _ = EventFD.drain(descriptor)
    }
}
