import Packets
import Platform

/// Software segmentation straight into a packet socket's transmit slots: each
/// segment takes the next free slot behind its virtio-net header (with
/// `offloads=csum` the kernel finishes its checksum; with `off` the header is
/// zeroed and every checksum was computed), the same slots `PacketPort.push`
/// copies a frame into, so a segment is copied once. The port flushes the
/// burst with one `sendto`.
@usableFromInline
struct TransmitSlotSegmentSink: DestinationSegmentSink {
    @usableFromInline let socket: PacketRingSocket
    @usableFromInline let passOffloads: Bool
    /// Bytes of a slot before the frame: the virtio-net header.
    @usableFromInline let headerSize: Int
    @usableFromInline let capacity: Int
    @usableFromInline var queued = 0
    @usableFromInline var bytes: UInt64 = 0
    @usableFromInline var shortfall: DropReason = .txFull
    /// The slot of the segment begun last, and its length.
    @usableFromInline var slot: UnsafeMutableRawPointer? = nil
    @usableFromInline var length = 0

    @inlinable
    init(socket: PacketRingSocket, passOffloads: Bool) {
        self.socket = socket
        self.passOffloads = passOffloads
        headerSize = socket.headerSize
        capacity = socket.transmitSlotCapacity
    }

    @inlinable
    mutating func beginSegment(length: Int) -> Bool {
        if headerSize &+ length > capacity {
            shortfall = .tooLong
            return false
        }
        // Slots free only as the driver finishes frames, not within this burst.
        guard let next = socket.nextTransmitSlot() else {
            shortfall = .txFull
            return false
        }
        slot = next
        self.length = length
        return true
    }

    @inlinable
    mutating func write(_ source: UnsafeRawPointer, count: Int, at offset: Int) {
        // SAFETY: beginSegment checked header plus segment fit the slot; the
        // segmenter writes only inside the length it announced.
        (slot.unsafelyUnwrapped + (headerSize &+ offset)).copyMemory(from: source, byteCount: count)
    }

    @inlinable
    mutating func endSegment(header: VirtioNetHeader) {
        let s = slot.unsafelyUnwrapped
        if headerSize == 0 {
            // No PACKET_VNET_HDR: the slot holds the frame alone.
        } else if passOffloads {
            header.store(to: s)
        } else {
            // A zeroed header: nothing asked of the kernel.
            s.storeBytes(of: 0, as: UInt64.self)
            s.storeBytes(of: 0, toByteOffset: 8, as: UInt16.self)
        }
        socket.commitTransmitSlot(length: headerSize &+ length)
        queued &+= 1
        bytes &+= UInt64(length)
    }
}
