import Packets

/// Swallows every frame it is given and counts it (tx: frames handed to the port); reads
/// back the stamps of generator frames (`TrafficAnalyser`). Emits nothing.
public final class SinkPort {
    public let counters = QueueCounters()
    public let analyser = TrafficAnalyser()

    public init() {}

    public var queueCount: Int { 1 }

    @inlinable public func pull(queue _: Int, into _: PacketBatch) -> Int { 0 }
    @inlinable public func release(queue _: Int) {}

    @inlinable
    public func push(queue _: Int, from batch: PacketBatch) {
        counters.sent(packets: batch.count, bytes: batch.totalBytes)
        analyser.inspect(batch)
    }
}
