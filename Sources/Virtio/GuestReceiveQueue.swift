import Packets

/// A ring that frames are pushed into, in either layout: its push is written
/// once, generic over `GuestWrites`, and `pushChoosingWrites` runs it with
/// the writes its dirty log calls for (`GuestWritingBurst.run`).
@usableFromInline
protocol GuestReceiveQueue: AnyObject {
    var configuration: RingConfiguration { get }
    var memoryTable: GuestMemory? { get }
    func push<W: GuestWrites>(from batch: PacketBatch, counters: QueueCounters, segmenter: SoftwareSegmenter?,
                              acceptance: OffloadAcceptance, writes: W)
}

extension GuestReceiveQueue {
    /// Pushes `batch` with `LoggedWrites` while the front-end logs, else with `UnloggedWrites`.
    @inlinable
    func pushChoosingWrites(from batch: PacketBatch, counters: QueueCounters, segmenter: SoftwareSegmenter?,
                               acceptance: OffloadAcceptance) {
        // No log, the usual case: plain writes, and the references go on as the
        // arguments they came in as. Put into a `ReceiveQueuePush` (and the log
        // and memory table read out of the ring for `run`), each was retained
        // and released on every push (docs/PERFORMANCE.md, "The worker's reference counting").
        if configuration.dirtyLogOwner == nil {
            push(from: batch, counters: counters, segmenter: segmenter, acceptance: acceptance, writes: UnloggedWrites())
            return
        }
        var burst = ReceiveQueuePush(queue: self, batch: batch, counters: counters, segmenter: segmenter,
                                     acceptance: acceptance)
        burst.run(log: configuration.dirtyLog, memory: memoryTable)
    }
}

/// One push into a ring, as a burst `GuestWritingBurst.run` picks the writes for.
@usableFromInline
struct ReceiveQueuePush<Queue: GuestReceiveQueue>: GuestWritingBurst {
    @usableFromInline let queue: Queue
    @usableFromInline let batch: PacketBatch
    @usableFromInline let counters: QueueCounters
    @usableFromInline let segmenter: SoftwareSegmenter?
    @usableFromInline let acceptance: OffloadAcceptance

    @inlinable
    init(queue: Queue, batch: PacketBatch, counters: QueueCounters, segmenter: SoftwareSegmenter?,
         acceptance: OffloadAcceptance) {
        self.queue = queue
        self.batch = batch
        self.counters = counters
        self.segmenter = segmenter
        self.acceptance = acceptance
    }

    @inlinable
    func write<W: GuestWrites>(with writes: W) {
        queue.push(from: batch, counters: counters, segmenter: segmenter, acceptance: acceptance, writes: writes)
    }
}
