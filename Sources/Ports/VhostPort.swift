import Logging
import Packets
import VhostUser
import Virtio

/// A vhost-user virtio-net device as a port: a thin adapter that pulls from
/// the guest's TX rings and pushes into its RX rings, one counter block per
/// queue pair. A ring check that fails marks the device broken, not the switch.
public final class VhostPort {
    public let device: VhostDevice
    public let endpoint: VhostUserEndpoint
    public let counters: [QueueCounters]
    /// The RARP broadcast a SEND_RARP asks for, built here when it is due: it
    /// enters the switch with the next pull of pair 0, as if the guest sent it.
    @usableFromInline let announcementFrame: UnsafeMutableRawPointer

    public init(endpoint: VhostUserEndpoint) {
        self.endpoint = endpoint
        self.device = endpoint.device
        self.counters = (0..<endpoint.device.queuePairs).map { _ in QueueCounters() }
        // SAFETY: the fill covers exactly the frameLength bytes just allocated.
        announcementFrame = .allocate(byteCount: ReverseARPAnnouncement.frameLength, alignment: 8)
        announcementFrame.initializeMemory(as: UInt8.self, repeating: 0, count: ReverseARPAnnouncement.frameLength)
    }

    deinit { announcementFrame.deallocate() }

    public var queueCount: Int { device.queuePairs }

    /// USO in both IP versions: a USO frame's gso_type does not say which.
    @usableFromInline static let guestUSO: VirtioNetFeatures = [.guestUSO4, .guestUSO6]

    /// What the guest's driver negotiated to receive (features change only while workers are paused).
    @inlinable
    public var offloadAcceptance: OffloadAcceptance {
        let f = device.features
        var a: OffloadAcceptance = []
        if f.contains(.guestCsum) { a.insert(.partialChecksum) }
        if f.contains(.guestTSO4) { a.insert(.tcp4) }
        if f.contains(.guestTSO6) { a.insert(.tcp6) }
        if f.contains(.guestECN) { a.insert(.ecn) }
        if f.isSuperset(of: Self.guestUSO) { a.insert(.udp) }
        return a
    }

    @inlinable
    public func pull(queue q: Int, into batch: PacketBatch) -> Int {
        // A live migration's announcement goes first, whether or not the rings run yet.
        let announced = q == 0 && device.hasPendingAnnouncement ? announce(into: batch) : 0
        return pull(from: device.transmitQueue(q), counters: counters[q], into: batch) &+ announced
    }

    /// The ring and its counters come in as arguments, borrowed: held in
    /// locals across the calls below they were retained and released on every
    /// pull, empty ones included (2 % of a busy worker's samples).
    @inlinable
    func pull(from txq: Virtqueue, counters: QueueCounters, into batch: PacketBatch) -> Int {
        guard txq.isRunning else { return 0 }
        let n = txq.pull(into: batch, counters: counters)
        if let e = txq.error { device.markBroken("queue \(txq.index): \(e)", fromDataPath: true) }
        return n
    }

    /// Puts the pending RARP announcement in `batch` (frame bytes in
    /// `announcementFrame`, a zero virtio-net header): 1, or 0 when none waits
    /// or the batch is full (it then waits for the next pull).
    @usableFromInline
    func announce(into batch: PacketBatch) -> Int {
        guard batch.room > 0, batch.freeSegments > 0, let mac = device.takeAnnouncement() else { return 0 }
        ReverseARPAnnouncement.write(announcing: mac, into: announcementFrame)
        batch.clearHeader(batch.count)
        batch.append(base: announcementFrame, length: UInt32(ReverseARPAnnouncement.frameLength), token: 0)
        counters[0].received(packets: 1, bytes: UInt64(ReverseARPAnnouncement.frameLength))
        return 1
    }

    @inlinable
    public func release(queue q: Int) {
        device.transmitQueue(q).release()
    }

    /// Copies `batch` into pair `q`'s receive ring; with a `segmenter`, GSO
    /// frames the guest did not negotiate are cut straight into its chains.
    @inlinable
    public func push(queue q: Int, from batch: PacketBatch, segmenter: SoftwareSegmenter? = nil) {
        push(into: device.receiveQueue(q), counters: counters[q], from: batch, segmenter: segmenter)
    }

    /// As above, the ring and its counters borrowed as arguments (see `pull(from:counters:into:)`).
    @inlinable
    func push(into rxq: Virtqueue, counters: QueueCounters, from batch: PacketBatch, segmenter: SoftwareSegmenter?) {
        guard rxq.isRunning else {
            counters.dropped(device.isBroken ? .deviceBroken : .notReady, batch.count)
            return
        }
        if let segmenter {
            rxq.push(from: batch, counters: counters, segmenter: segmenter, acceptance: offloadAcceptance)
        } else {
            rxq.push(from: batch, counters: counters)
        }
        if let e = rxq.error { device.markBroken("queue \(rxq.index): \(e)", fromDataPath: true) }
    }

    /// About how many frames pair `q` can take now, up to `limit`: the guest's
    /// posted receive buffers (a frame that spans several takes more than one).
    @inlinable
    public func room(queue q: Int, atMost limit: Int) -> Int { device.receiveQueue(q).postedBuffers(atMost: limit) }

    /// What `ferry ctl show ports` says of it.
    public var state: String {
        if let why = device.brokenReason { return "broken: \(why)" }
        if device.isRunning { return "running" }
        return endpoint.isConnected ? "negotiating" : (endpoint.mode == .server ? "listening" : "connecting")
    }
}
