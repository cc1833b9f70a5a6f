import Model
import Packets
import Synchronization

/// A worker's learning requests on their way to the database's one writer.
///
/// Workers only read the forwarding database (`refresh`, `lookup`). A source
/// address that is new, or seen on another port, is offered here instead; the
/// control thread, which is the only writer of the table, drains every
/// worker's queue (`drain(into:now:)`) and learns. So several workers share one
/// table without a lock, and no worker ever waits for learning: until the
/// writer has caught up, frames to the new address are flooded, which is what
/// an unknown destination gets anyway.
///
/// Single producer (the worker), single consumer (the writer); a fixed ring
/// allocated once. A full ring drops the request and counts it: the next frame
/// from the address offers it again.
public final class LearningQueue: @unchecked Sendable {
    public static let defaultCapacity = 1024

    @usableFromInline let capacity: Int
    @usableFromInline let mask: Int
    @usableFromInline let keys: UnsafeMutablePointer<UInt64>
    @usableFromInline let ports: UnsafeMutablePointer<PortIndex>
    /// The tunnel endpoint each source came from (0 for a port that is no tunnel).
    @usableFromInline let endpoints: UnsafeMutablePointer<UInt16>
    /// Next slot the producer fills; stored releasing after the slot.
    @usableFromInline let tail = Atomic<Int>(0)
    /// Next slot the consumer reads; stored releasing after the read.
    @usableFromInline let head = Atomic<Int>(0)
    /// Producer-only: the last request offered, so a burst from one new address
    /// queues it once, not once per frame.
    @usableFromInline var lastKey: UInt64 = .max
    @usableFromInline var lastPort = PortIndex(.max)
    @usableFromInline var lastEndpoint: UInt16 = .max
    /// Requests lost to a full ring (the producer alone writes, `addAsOnlyWriter`; anyone reads).
    public let overflows = Atomic<UInt64>(0)

    public init(capacity: Int = LearningQueue.defaultCapacity) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "capacity is a power of two")
        self.capacity = capacity
        mask = capacity - 1
        // SAFETY: each fill covers exactly the count allocated just before it.
        keys = .allocate(capacity: capacity)
        keys.initialize(repeating: 0, count: capacity)
        ports = .allocate(capacity: capacity)
        ports.initialize(repeating: 0, count: capacity)
        endpoints = .allocate(capacity: capacity)
        endpoints.initialize(repeating: 0, count: capacity)
    }

    deinit {
        keys.deallocate()
        ports.deallocate()
        endpoints.deallocate()
    }

    /// Producer: asks the writer to learn `key` on `port` (behind tunnel
    /// endpoint `endpoint`, 0 for none). False when nothing
    /// was queued (a repeat still waiting in the ring, or a full ring).
    @inlinable
    @discardableResult
    public func offer(_ key: FDBKey, port: PortIndex, endpoint: UInt16 = 0) -> Bool {
        let t = tail.load(ordering: .relaxed)
        let h = head.load(ordering: .acquiring)
        if key.rawValue == lastKey && port == lastPort && endpoint == lastEndpoint && t != h { return false }
        if t &- h >= capacity {
            overflows.addAsOnlyWriter(1)
            return false
        }
        // SAFETY: capacity is a power of two and mask = capacity - 1: every index is in the ring.
        keys[t & mask] = key.rawValue
        ports[t & mask] = port
        endpoints[t & mask] = endpoint
        tail.store(t &+ 1, ordering: .releasing)
        lastKey = key.rawValue
        lastPort = port
        lastEndpoint = endpoint
        return true
    }

    /// Consumer (the database's writer): learns every queued request; returns how many.
    @discardableResult
    public func drain(into database: ForwardingDatabase, now: UInt64) -> Int {
        let t = tail.load(ordering: .acquiring)
        var h = head.load(ordering: .relaxed)
        let n = t &- h
        while h != t {
            // SAFETY: masked as in `offer`; h != t, so the producer published this entry (acquire above).
            database.learn(FDBKey(rawValue: keys[h & mask]), port: ports[h & mask], endpoint: endpoints[h & mask],
                           now: now)
            h &+= 1
        }
        head.store(h, ordering: .releasing)
        return n
    }
}
