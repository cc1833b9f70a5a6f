import Packets
import VhostUser
import Virtio
import XDP

/// Every kind of port, as one closed set: the worker dispatches on the case,
/// with no existential or dynamic call per burst. Whatever depends on the
/// kind is answered here and in the Port+*.swift files (opening, state,
/// shutting down, waking a sleeping worker, the direct TAP path, what the
/// control thread looks after), so the rest of Ferry treats every port alike.
public enum Port {
    case vhost(VhostPort)
    case gen(GenPort)
    case sink(SinkPort)
    case tap(TapPort)
    case xdp(XdpPort)
    case failed(FailedPort)
    case packet(PacketPort)
    case vxlan(VxlanPort)
    case virtioUser(VirtioUserPort)

    public var queueCount: Int {
        switch self {
        case .vhost(let p): p.queueCount
        case .gen(let p): p.queueCount
        case .sink(let p): p.queueCount
        case .tap(let p): p.queueCount
        case .xdp(let p): p.queueCount
        case .failed(let p): p.queueCount
        case .packet(let p): p.queueCount
        case .vxlan(let p): p.queueCount
        case .virtioUser(let p): p.queueCount
        }
    }

    /// Takes up to a batch of frames from `queue`; returns how many buffers were consumed.
    @inlinable
    public func pull(queue: Int, into batch: PacketBatch) -> Int {
        switch self {
        case .vhost(let p): p.pull(queue: queue, into: batch)
        case .gen(let p): p.pull(queue: queue, into: batch)
        case .sink(let p): p.pull(queue: queue, into: batch)
        case .tap(let p): p.pull(queue: queue, into: batch)
        case .xdp(let p): p.pull(queue: queue, into: batch)
        case .failed(let p): p.pull(queue: queue, into: batch)
        case .packet(let p): p.pull(queue: queue, into: batch)
        case .vxlan(let p): p.pull(queue: queue, into: batch)
        case .virtioUser(let p): p.pull(queue: queue, into: batch)
        }
    }

    /// Hands every frame of `batch` to the port; what it cannot take it counts as dropped.
    @inlinable
    public func push(queue: Int, from batch: PacketBatch) {
        switch self {
        case .vhost(let p): p.push(queue: queue, from: batch)
        case .gen(let p): p.push(queue: queue, from: batch)
        case .sink(let p): p.push(queue: queue, from: batch)
        case .tap(let p): p.push(queue: queue, from: batch)
        case .xdp(let p): p.push(queue: queue, from: batch)
        case .failed(let p): p.push(queue: queue, from: batch)
        case .packet(let p): p.push(queue: queue, from: batch)
        case .vxlan(let p): p.push(queue: queue, from: batch)
        case .virtioUser(let p): p.push(queue: queue, from: batch)
        }
    }

    /// As `push`, for a batch that may hold GSO frames the port does not take
    /// (its `offloadAcceptance`): the port cuts them with `segmenter` straight
    /// into the buffers they leave Ferry from (a guest's receive chains, the
    /// xdp port's UMEM frames, a packet socket's transmit slots, a vxlan
    /// port's send arena), so each
    /// segment is copied once, and counts them (`segmented_frames`,
    /// `segments_out`, drops per segment). The worker has already finished
    /// the partial checksums the port does not take.
    @inlinable
    public func push(queue: Int, from batch: PacketBatch, segmenter: SoftwareSegmenter) {
        switch self {
        case .vhost(let p): p.push(queue: queue, from: batch, segmenter: segmenter)
        case .xdp(let p): p.push(queue: queue, from: batch, segmenter: segmenter)
        case .packet(let p): p.push(queue: queue, from: batch, segmenter: segmenter)
        case .vxlan(let p): p.push(queue: queue, from: batch, segmenter: segmenter)
        // They take every GSO frame as it is (a TAP's kernel segments for its
        // own side), so none is ever left to them to cut; a failed port drops all.
        case .tap, .gen, .sink, .failed: push(queue: queue, from: batch)
        // It negotiates no segmentation: a super-frame is longer than its buffers (too_long).
        case .virtioUser(let p): p.push(queue: queue, from: batch)
        }
    }

    /// Returns the buffers of the last pull to their owner, once the frames were copied on.
    @inlinable
    public func release(queue: Int) {
        switch self {
        case .vhost(let p): p.release(queue: queue)
        case .gen(let p): p.release(queue: queue)
        case .sink(let p): p.release(queue: queue)
        case .tap(let p): p.release(queue: queue)
        case .xdp(let p): p.release(queue: queue)
        case .failed(let p): p.release(queue: queue)
        case .packet(let p): p.release(queue: queue)
        case .vxlan(let p): p.release(queue: queue)
        case .virtioUser(let p): p.release(queue: queue)
        }
    }

    /// About how many frames `queue` can take now, counted up to `limit` (a
    /// vhost ring's posted RX buffers; a frame that spans several buffers takes
    /// more than one). A TAP cannot tell: its send buffer is counted in bytes of
    /// kernel memory; a packet port could, but only by walking its transmit ring.
    @inlinable
    public func room(queue: Int, atMost limit: Int) -> Int {
        switch self {
        case .vhost(let p): p.room(queue: queue, atMost: limit)
        case .virtioUser(let p): p.room(atMost: limit)
        case .gen, .sink, .tap, .xdp, .failed, .packet, .vxlan: Int.max
        }
    }

    /// What the port takes in a frame's virtio-net header now; the worker
    /// finishes checksums or segments frames that ask for more.
    @inlinable
    public var offloadAcceptance: OffloadAcceptance {
        switch self {
        case .vhost(let p): p.offloadAcceptance
        // tun takes partial checksums and GSO frames on write and segments for its own side itself.
        case .tap, .gen, .sink, .failed: .everything
        // The kernel takes them with PACKET_VNET_HDR, as far as `offloads=` lets it.
        case .packet(let p): p.offloadAcceptance
        // It copies each frame into one UMEM frame and finishes its checksum there; AF_XDP takes no GSO.
        case .xdp: .partialChecksum
        // It copies each frame into its datagram buffer and finishes the checksum there; through
        // an IPv6 underlay (`via=`) the uplink finishes the outer UDP checksum, so inner ones come finished.
        case .vxlan(let p): p.underlay?.ipv6 == true ? [] : .partialChecksum
        // No offloads negotiated: it finishes a partial checksum while copying into its buffer.
        case .virtioUser: .partialChecksum
        }
    }

    /// The counters of one queue, for the data path (no array built).
    @inlinable
    public func counters(queue: Int) -> QueueCounters {
        switch self {
        case .vhost(let p): p.counters[queue]
        case .tap(let p): p.counters[queue]
        case .xdp(let p): p.counters[queue]
        case .failed(let p): p.counters
        case .packet(let p): p.counters[queue]
        case .vxlan(let p): p.counters(queue: queue)
        case .virtioUser(let p): p.counters[queue]
        case .gen(let p): p.counters
        case .sink(let p): p.counters
        }
    }

    /// Counters per queue, for stats.
    public var counters: [QueueCounters] {
        switch self {
        case .vhost(let p): p.counters
        case .gen(let p): [p.counters]
        case .sink(let p): [p.counters]
        case .tap(let p): p.counters
        // The copy socket's counters as one more queue: frames that came the kernel's way.
        case .xdp(let p): p.counters + [p.copies.counters]
        case .failed(let p): [p.counters]
        case .packet(let p): p.counters
        case .vxlan(let p): p.counters
        case .virtioUser(let p): p.counters
        }
    }

    /// A port nothing ever arrives from (a sink, a port that failed to open): not worth polling.
    public var neverReceives: Bool {
        switch self {
        case .sink, .failed: true
        default: false
        }
    }

    /// Whether `queue` can have frames now: false only for a guest's ring that no
    /// front-end has started, which a worker then skips like an empty TAP.
    public func receiveQueueRuns(_ queue: Int) -> Bool {
        if case .vhost(let p) = self { return p.device.transmitQueue(queue).isRunning }
        return true
    }

    /// Frames arrive from a guest's ring: a guest can be told not to kick while
    /// a worker polls it (the idle policy's notion of a busy guest).
    public var receivesFromGuestRing: Bool {
        if case .vhost = self { return true }
        return false
    }

    /// Looking at a receive queue costs a syscall (a TAP's read; not a packet
    /// or xdp port's, a look at a mapped ring): a worker skips an empty one for
    /// a few loops before it looks again.
    public var pullCostsASyscall: Bool {
        switch self {
        case .tap, .vxlan: true
        default: false
        }
    }

    /// Queue pair `pair` of a vhost port, as a worker holds it between
    /// configurations (a new object each time); nil for every other kind.
    public func vhostQueuePair(_ pair: Int) -> VhostQueuePair? {
        if case .vhost(let p) = self { return VhostQueuePair(port: p, pair: pair) }
        return nil
    }

    /// The tunnel port (vxlan) behind which addresses are learned per remote endpoint.
    public var tunnel: VxlanPort? {
        if case .vxlan(let p) = self { return p }
        return nil
    }

    /// The VXLAN datagrams an uplink's last pull of `queue` set apart for the
    /// tunnels that send through it (`XdpPort.tunnelFrames`), nil when none.
    @inlinable
    public func underlayFrames(queue: Int) -> PacketBatch? {
        if case .xdp(let p) = self { return p.tunnelFrames(queue: queue) }
        return nil
    }

    /// The port makes its frames at will: a worker asks the generator how many it may
    /// emit given what its VLAN's fullest port can take (`GenPort.allowance`), so that
    /// `count=N` means N delivered without a rate, and a rated one starts when its
    /// destinations can receive.
    public var generator: GenPort? {
        if case .gen(let p) = self { return p }
        return nil
    }

    /// What a sink read back from the frames it was handed, for a sink.
    public var analyser: TrafficAnalyser? {
        if case .sink(let p) = self { return p.analyser }
        return nil
    }

    /// The XDP program that steers frames to the port, for an uplink that has one.
    public var steering: SteeringProgram? {
        if case .xdp(let p) = self { return p.steering }
        return nil
    }

    public var kind: String {
        switch self {
        case .vhost: "vhost"
        case .gen: "gen"
        case .sink: "sink"
        case .tap: "tap"
        case .xdp: "xdp"
        case .failed: "failed"
        case .packet: "packet"
        case .vxlan: "vxlan"
        case .virtioUser: "virtio-user"
        }
    }
}
