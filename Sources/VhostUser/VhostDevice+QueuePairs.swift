import Virtio

// Virtio-net numbers its queues in pairs (virtio 1.2 §5.1.2): receiveqN is
// queue 2(N-1), transmitqN is queue 2(N-1)+1. The names are the driver's:
// the guest receives on receiveq, so Ferry pushes into it, and transmits on
// transmitq, so Ferry pulls from it. Only these two say so; every port and
// worker asks them by pair.
extension VhostDevice {
    /// The ring pair `pair`'s frames go into the guest through.
    @inlinable
    public func receiveQueue(_ pair: Int) -> Virtqueue { ring(2 &* pair) }

    /// The ring pair `pair`'s frames come out of the guest through.
    @inlinable
    public func transmitQueue(_ pair: Int) -> Virtqueue { ring(2 &* pair &+ 1) }
}
