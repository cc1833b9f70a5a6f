import Packets
import Platform

// An AF_PACKET receive ring read into a batch: what the packet port does on
// each of its queues, and the xdp port's copy socket on its one.
extension PacketRingSocket {
    /// Hands out the frames of the receive ring until the batch is full or the
    /// kernel has no more; returns how many frames were taken off the ring,
    /// dropped ones included. Each frame is a reference into the ring (token:
    /// its block) with the virtio-net header the kernel wrote before it
    /// (PACKET_VNET_HDR), or a zeroed one without. The kernel's header is taken
    /// as a guest's would be: flags other than NEEDS_CSUM and DATA_VALID
    /// cleared, a checksum request outside the frame dropped
    /// (`bad_checksum_offset`); a GSO frame is checked where every port's is
    /// (`Worker.isRefusedGSO`).
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
            if let given = frame.virtioNetHeader {
                // The batch has room (the loop stops at `budget`): header(count) is a whole slot.
                if !Self.copyChecked(given, to: batch.header(batch.count), frameLength: frame.length) {
                    counters.dropped(.badChecksumOffset)
                    continue
                }
            } else {
                batch.clearHeader(batch.count)
            }
            batch.append(base: frame.data, length: UInt32(truncatingIfNeeded: frame.length),
                         token: UInt32(truncatingIfNeeded: frame.block))
            frames &+= 1
            bytes &+= UInt64(frame.length)
        }
        if frames > 0 { counters.received(packets: frames, bytes: bytes) }
        return taken
    }

    /// Copies the 10-byte virtio-net header at `given` into the batch's header
    /// slot `header` (num_buffers 0, unknown flags cleared); false when it asks
    /// for a checksum that does not lie inside the frame's `frameLength` bytes.
    @inlinable
    static func copyChecked(_ given: UnsafeRawPointer, to header: UnsafeMutableRawPointer, frameLength: Int) -> Bool {
        // SAFETY: `given` is the 10-byte virtio-net header the kernel put before the frame
        // (PACKET_VNET_HDR, read bytes 0..9), `header` a batch header slot of 16 bytes (bytes 0..11
        // written).
        header.storeBytes(of: given.loadUnaligned(as: UInt64.self), as: UInt64.self)
        header.storeBytes(of: given.loadUnaligned(fromByteOffset: 8, as: UInt16.self), toByteOffset: 8, as: UInt16.self)
        header.storeBytes(of: 0, toByteOffset: 10, as: UInt16.self)
        let flags = header.load(as: UInt8.self) & (VirtioNetHeader.needsChecksum | VirtioNetHeader.dataValid)
        header.storeBytes(of: flags, as: UInt8.self)
        if flags & VirtioNetHeader.needsChecksum == 0 { return true }
        let fields = VirtioNetHeader(loading: header)
        return Int(fields.checksumStart) &+ Int(fields.checksumOffset) &+ 2 <= frameLength
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
