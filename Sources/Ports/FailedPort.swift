import Packets

/// An uplink that could not be opened (no such interface, another program
/// holds its XDP hook, too little locked memory): the switch keeps running
/// without it, as Open vSwitch keeps a bridge whose port failed to open, and
/// the reason stays visible in `ferry ctl show ports`. Frames switched to it
/// are counted as dropped, `not_ready`; it never emits one.
public final class FailedPort {
    public let reason: String
    public let counters = QueueCounters()

    public init(reason: String) { self.reason = reason }

    public var queueCount: Int { 1 }

    @inlinable public func pull(queue _: Int, into _: PacketBatch) -> Int { 0 }
    @inlinable public func release(queue _: Int) {}

    @inlinable
    public func push(queue _: Int, from batch: PacketBatch) {
        counters.dropped(.notReady, batch.count)
    }
}
