import Packets
import Platform

// An AF_PACKET receive ring read into a batch: what the packet port does on
// each of its queues, and the xdp port's copy socket on its one.
extension PacketRingSocket {
    /// Hands out the frames of the receive ring until the batch is full or the
    /// kernel has no more; returns how many frames were taken off the ring,
    /// dropped ones included. Each frame is a reference into the ring (token:
    /// its block) with a zeroed virtio-net header: the wire offers no checksum
    /// or segmentation metadata.
    @inlinable
    func pull(into batch: PacketBatch, counters: QueueCounters) -> Int {
        var budget = batch.room
        if budget > batch.freeSegments { budget = batch.freeSegments }
        var taken = 0
        var frames = 0
        var bytes: UInt64 = 0
        while frames < budget, let frame = nextReceivedFrame() {
            taken &+= 1
            if frame.isCut {
                counters.dropped(.rxBufferTooSmall)
                continue
            }
            if frame.length < Ethernet.headerSize {
                counters.dropped(.runt)
                continue
            }
            let header = batch.header(batch.count)
            header.storeBytes(of: 0, as: UInt64.self)
            header.storeBytes(of: 0, toByteOffset: 8, as: UInt32.self)
            batch.append(base: frame.data, length: UInt32(truncatingIfNeeded: frame.length),
                         token: UInt32(truncatingIfNeeded: frame.block))
            frames &+= 1
            bytes &+= UInt64(frame.length)
        }
        if frames > 0 { counters.received(packets: frames, bytes: bytes) }
        return taken
    }

    /// After `poll` reported POLLERR on the descriptor: takes the socket's
    /// error (ENETDOWN: the interface went down or away), counts it as
    /// `io_error` on `counters` and returns it (0 if there was none). Taking it
    /// stops the POLLERR, so a sleeping worker does not spin on a dead interface.
    func takeSocketError(counters: QueueCounters) -> Int32 {
        let error = takePendingError()
        if error != 0 { counters.dropped(.ioError) }
        return error
    }
}
