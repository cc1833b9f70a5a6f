import Packets
import Platform

/// Software segmentation straight into an xdp port's transmit frames: each
/// segment takes a free UMEM frame and the next TX ring slot, the same ones
/// `XdpPort.push` copies a frame into, so a segment is copied once, from the
/// source frame to the UMEM frame the NIC sends. The port produces the slots
/// and kicks the kernel once for the burst.
@usableFromInline
struct UMEMSegmentSink: DestinationSegmentSink {
    @usableFromInline let umemBase: UnsafeMutableRawPointer
    @usableFromInline let free: UnsafeMutablePointer<UInt64>
    @usableFromInline var freeCount: Int
    @usableFromInline let tx: XDPRing
    /// The TX ring's write position at the start of the burst; `queued` slots are filled after it.
    @usableFromInline let position: UInt32
    @usableFromInline var queued: Int
    /// Slots the burst may fill: the TX ring's free entries, and no more than free frames.
    @usableFromInline let room: Int
    @usableFromInline let frameSize: Int
    @usableFromInline var bytes: UInt64 = 0
    @usableFromInline var shortfall: DropReason = .txFull
    /// The UMEM frame of the segment begun last, and its length.
    @usableFromInline var address: UInt64 = 0
    @usableFromInline var length = 0

    @inlinable
    init(umemBase: UnsafeMutableRawPointer, free: UnsafeMutablePointer<UInt64>, freeCount: Int, tx: XDPRing,
         position: UInt32, queued: Int, room: Int, frameSize: Int) {
        self.umemBase = umemBase
        self.free = free
        self.freeCount = freeCount
        self.tx = tx
        self.position = position
        self.queued = queued
        self.room = room
        self.frameSize = frameSize
    }

    @inlinable
    mutating func beginSegment(length: Int) -> Bool {
        if length > frameSize {
            shortfall = .tooLong
            return false
        }
        if queued == room {
            shortfall = .txFull
            return false
        }
        // SAFETY: freeCount >= 1: the push's room was at most the free count, and queued < room (the
        // test above) while each queued frame took one, so a free frame is left.
        address = free[freeCount &- 1]
        self.length = length
        return true
    }

    @inlinable
    mutating func write(_ source: UnsafeRawPointer, count: Int, at offset: Int) {
        // SAFETY: beginSegment checked the segment fits one UMEM frame; the
        // segmenter writes only inside the length it announced.
        (umemBase + Int(truncatingIfNeeded: address) + offset).copyMemory(from: source, byteCount: count)
    }

    @inlinable
    mutating func endSegment(header _: VirtioNetHeader) {
        // The wire takes no virtio-net header: every checksum was computed (`.complete`).
        freeCount &-= 1
        XdpPort.describe(tx, at: position &+ UInt32(truncatingIfNeeded: queued), address: address, length: length)
        queued &+= 1
        bytes &+= UInt64(length)
    }
}
