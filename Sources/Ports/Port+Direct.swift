import Glibc
import Packets
import VhostUser
import Virtio

// The two ends of the direct TAP → guest path (Worker+Direct.swift): a queue
// whose frames can be read one at a time into buffers someone else gives,
// and a guest's receive ring that lends its chains for it. The worker pairs
// them; each port only says whether it can be one end.

/// A receive queue read one frame at a time into the caller's buffers (a
/// TAP's: the kernel's copy is then the only one).
public struct DirectReader {
    @usableFromInline let tap: TapPort
    public let queue: Int

    @usableFromInline
    init(tap: TapPort, queue: Int) {
        self.tap = tap
        self.queue = queue
    }

    /// The queue's counters: frames read, and frames dropped on the way in.
    @inlinable
    public var counters: QueueCounters { tap.counters[queue] }

    /// The longest frame a read may bring now (the interface's MTU and header;
    /// 64 KiB with TSO or USO on).
    @inlinable
    public var maxFrameLength: Int { tap.maxFrameLength }

    /// What the kernel may hand over now: partial checksums, super-frames.
    @inlinable
    public var deliveredOffloads: OffloadAcceptance { tap.deliveredOffloads }

    /// Reads one frame, its virtio-net header first, into the `count` buffers of
    /// `iovecs`: the bytes read, or nil when none waits or the read failed
    /// (counted). A read that fills the buffers may have been cut.
    @inlinable
    public func read(_ iovecs: UnsafePointer<iovec>, count: Int) -> Int? {
        tap.readFrame(queue: queue, iovecs, count: count)
    }
}

/// A guest's receive ring, lent for frames read straight into its chains.
public struct GuestReceiveRing {
    public let ring: Virtqueue
    public let counters: QueueCounters
    @usableFromInline let device: VhostDevice
    /// What the guest takes in a frame's virtio-net header.
    public let offloadAcceptance: OffloadAcceptance

    @usableFromInline
    init(port: VhostPort, pair: Int) {
        ring = port.device.receiveQueue(pair)
        counters = port.counters[pair]
        device = port.device
        offloadAcceptance = port.offloadAcceptance
    }

    /// After a burst: publishes the committed chains (one store, one
    /// notification decision), breaks the device if the ring broke a rule,
    /// and counts what was sent.
    @inlinable
    public func finish(sent: Int, bytes: UInt64) {
        ring.publishCommitted()
        if let e = ring.error { device.markBroken("queue \(ring.index): \(e)", fromDataPath: true) }
        if sent > 0 { counters.sent(packets: sent, bytes: bytes) }
    }
}

extension Port {
    /// `queue` as the source end of the direct path, for a port that can be one.
    @inlinable
    public func directReader(queue: Int) -> DirectReader? {
        if case .tap(let p) = self { return DirectReader(tap: p, queue: queue) }
        return nil
    }

    /// Pair `queue`'s receive ring as the far end of the direct path, for a port that can be one.
    @inlinable
    public func guestReceiveRing(_ queue: Int) -> GuestReceiveRing? {
        if case .vhost(let p) = self { return GuestReceiveRing(port: p, pair: queue) }
        return nil
    }
}
