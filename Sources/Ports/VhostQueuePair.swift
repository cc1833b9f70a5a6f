import Packets
import VhostUser
import Virtio

/// One queue pair of a vhost port as a worker holds it from one configuration
/// to the next (`WorkerSource.vhost`, `WorkerPort.vhost`): the pair's transmit
/// ring, which the worker pulls from, and its receive ring, which it pushes
/// into, each in both layouts, and the pair's counters.
///
/// Why: a pull or push that reached its ring through the device's arrays
/// (`device.queues[i]`, `counters[q]`) and the port bound out of `Port`'s
/// switch retained and released each of them on every burst, empty ones
/// included (three pairs per pull, 15-17 % of a guest-to-guest worker's
/// samples; docs/PERFORMANCE.md, "The worker's reference counting"). Here
/// they are `let` properties of an object the worker hands down as an
/// argument, so each burst borrows them.
///
/// Nothing held here goes stale: a device makes both layouts' rings of every
/// queue when it is made (`VhostDevice.queues`, `packedQueues`, `let`) and a
/// port its counters (`VhostPort.counters`, `let`), so a SET_VRING_*, a reset,
/// a memory table change or a migration changes what is inside a ring (under
/// the device's gate, with the workers parked), never which ring it is. The
/// layout the driver negotiated is read at each burst, and decided by the
/// device (`VhostDevice.withNegotiatedRing`, beside `VhostDevice.ring(_:)`).
/// The references are strong: a port the switch drops lives on until every
/// worker's tables let go of it.
public final class VhostQueuePair {
    public let port: VhostPort
    public let pair: Int
    public let counters: QueueCounters
    @usableFromInline let device: VhostDevice
    @usableFromInline let splitTransmit: SplitVirtqueue
    @usableFromInline let packedTransmit: PackedVirtqueue
    @usableFromInline let splitReceive: SplitVirtqueue
    @usableFromInline let packedReceive: PackedVirtqueue

    public init(port: VhostPort, pair: Int) {
        precondition(pair >= 0 && pair < port.queueCount)
        self.port = port
        self.pair = pair
        counters = port.counters[pair]
        device = port.device
        splitTransmit = device.queues[2 &* pair &+ 1]
        packedTransmit = device.packedQueues[2 &* pair &+ 1]
        splitReceive = device.queues[2 &* pair]
        packedReceive = device.packedQueues[2 &* pair]
    }

    /// `body` of the pair's transmit or receive ring in the layout the driver negotiated.
    @inline(__always)
    func withTransmit<Result>(_ body: (Virtqueue) -> Result) -> Result {
        device.withNegotiatedRing(split: splitTransmit, packed: packedTransmit, body)
    }

    @inline(__always)
    func withReceive<Result>(_ body: (Virtqueue) -> Result) -> Result {
        device.withNegotiatedRing(split: splitReceive, packed: packedReceive, body)
    }

    /// `VhostPort.pull(queue:into:)` for this pair. Not inlined: inside it the
    /// rings are `let` properties of a borrowed `self`, which is what keeps
    /// them from being retained.
    @inline(never)
    public func pull(into batch: PacketBatch) -> Int {
        // A live migration's announcement goes first, whether or not the rings run yet.
        let announced = pair == 0 && device.hasPendingAnnouncement ? port.announce(into: batch) : 0
        return withTransmit { port.pull(from: $0, counters: counters, into: batch) } &+ announced
    }

    /// `VhostPort.release(queue:)` for this pair.
    @inline(never)
    public func release() {
        withTransmit { $0.release() }
    }

    /// Whether the transmit ring runs (`Port.receiveQueueRuns`).
    @inline(never)
    public func transmitRingRuns() -> Bool {
        withTransmit { $0.isRunning }
    }

    /// `VhostPort.push(queue:from:segmenter:)` for this pair.
    @inline(never)
    public func push(from batch: PacketBatch, segmenter: SoftwareSegmenter?) {
        withReceive { port.push(into: $0, counters: counters, from: batch, segmenter: segmenter) }
    }

    /// `VhostPort.room(queue:atMost:)` for this pair.
    @inline(never)
    public func room(atMost limit: Int) -> Int {
        withReceive { $0.postedBuffers(atMost: limit) }
    }
}
