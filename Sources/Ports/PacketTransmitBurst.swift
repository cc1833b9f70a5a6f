import Packets
import Platform

/// One burst of frames and segments into a packet socket's transmit ring.
/// Each takes the next free slot and is committed there; they go to the
/// kernel with one `sendto` when the burst ends (`hand`), or earlier only
/// when the ring is full (`nextSlot` hands what is committed and looks once
/// more, as the kernel frees a slot once the driver is done with its frame).
/// A burst of super-frames cut into segments (16 × 45) outgrows the ring, but
/// a `sendto` per super-frame cost `offloads=off` CPU for every burst
/// (docs/PERFORMANCE.md, "One sendto per burst").
@usableFromInline
struct PacketTransmitBurst {
    @usableFromInline let socket: PacketRingSocket
    @usableFromInline let counters: QueueCounters
    /// Slots committed since the last `sendto`, and their frames' bytes.
    @usableFromInline var queued = 0
    @usableFromInline var bytes: UInt64 = 0
    /// The errno of the last `sendto` that failed other than "not now", 0 if none.
    @usableFromInline var failure: Int32 = 0

    @inlinable
    init(socket: PacketRingSocket, counters: QueueCounters) {
        self.socket = socket
        self.counters = counters
    }

    /// Where the next frame goes, or nil when the ring is full even after
    /// handing the kernel what this burst committed.
    @inlinable
    mutating func nextSlot() -> UnsafeMutableRawPointer? {
        if let slot = socket.nextTransmitSlot() { return slot }
        if queued == 0 { return nil }
        hand()
        return socket.nextTransmitSlot()
    }

    /// Requests the slot `nextSlot` returned: `length` bytes in it (its
    /// virtio-net header included), `frameBytes` of them the frame's.
    @inlinable
    mutating func commit(length: Int, frameBytes: Int) {
        socket.commitTransmitSlot(length: length)
        queued &+= 1
        bytes &+= UInt64(frameBytes)
    }

    /// Hands the slots committed since the last flush to the kernel with one
    /// `sendto` and counts what it took.
    @inlinable
    mutating func hand() {
        if queued == 0 { return }
        let flush = socket.flushTransmit()
        let sent = queued &- flush.notTaken
        if sent > 0 { counters.sent(packets: sent, bytes: bytes &- flush.notTakenBytes) }
        if flush.notTaken > 0 {
            counters.dropped(flush.wouldBlock || flush.error == 0 ? .txFull : .ioError, flush.notTaken)
        }
        if flush.error != 0 && !flush.wouldBlock { failure = flush.error }
        queued = 0
        bytes = 0
    }
}
