import Packets
import Platform

/// Software segmentation straight into a packet socket's transmit slots: each
/// segment takes the next free slot behind its virtio-net header (with
/// `offloads=csum` the kernel finishes its checksum; with `off` the header is
/// zeroed and every checksum was computed), the same slots `PacketPort.push`
/// copies a frame into, so a segment is copied once. The slots are the
/// port's `PacketTransmitBurst`'s: one `sendto` for the burst, or more only
/// when its segments outgrow the ring.
@usableFromInline
struct TransmitSlotSegmentSink: DestinationSegmentSink {
    @usableFromInline var burst: PacketTransmitBurst
    @usableFromInline let passOffloads: Bool
    /// Bytes of a slot before the frame: the virtio-net header.
    @usableFromInline let headerSize: Int
    @usableFromInline let capacity: Int
    @usableFromInline var shortfall: DropReason = .txFull
    /// The slot of the segment begun last, and its length.
    @usableFromInline var slot: UnsafeMutableRawPointer? = nil
    @usableFromInline var length = 0

    @inlinable
    init(burst: PacketTransmitBurst, passOffloads: Bool) {
        self.burst = burst
        self.passOffloads = passOffloads
        headerSize = burst.socket.headerSize
        capacity = burst.socket.transmitSlotCapacity
    }

    @inlinable
    mutating func beginSegment(length: Int) -> Bool {
        if headerSize &+ length > capacity {
            shortfall = .tooLong
            return false
        }
        // Slots free only as the driver finishes frames.
        guard let next = burst.nextSlot() else {
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
        // SAFETY: the segmenter ends only a segment beginSegment began, which set slot to a ring slot.
        let s = slot.unsafelyUnwrapped
        if headerSize == 0 {
            // No PACKET_VNET_HDR: the slot holds the frame alone.
        } else if passOffloads {
            header.store(to: s)
        } else {
            // A zeroed header: nothing asked of the kernel.
            VirtioNetHeader.storeNone(to: s)
        }
        burst.commit(length: headerSize &+ length, frameBytes: length)
    }
}
