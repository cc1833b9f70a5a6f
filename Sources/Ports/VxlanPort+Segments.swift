import Packets
import Platform

/// Software segmentation straight into a vxlan port's send arena: each
/// segment is written behind room for its UDP and VXLAN headers, where
/// `VxlanPort.push` gathers a frame, and becomes one datagram of the burst,
/// so a segment is copied once, from the source frame to the buffer the
/// kernel sends. The segments of one frame share its flow (one source port)
/// and VTEPs, and all but the last one length: the port sends them as one
/// segmented message (UDP GSO).
@usableFromInline
struct TunnelSegmentSink: DestinationSegmentSink {
    @usableFromInline let port: VxlanPort
    @usableFromInline var burst: VxlanPort.SendBurst
    @usableFromInline let targets: UInt32
    @usableFromInline let copies: Int
    /// The frame's flow sender, from its first segment's headers (-1 before it).
    @usableFromInline var flow = -1
    @usableFromInline var length = 0
    @usableFromInline var shortfall: DropReason = .txFull

    @inlinable
    init(port: VxlanPort, burst: VxlanPort.SendBurst, targets: UInt32, copies: Int) {
        self.port = port
        self.burst = burst
        self.targets = targets
        self.copies = copies
    }

    @inlinable
    mutating func beginSegment(length: Int) -> Bool {
        if VxlanPort.encapsulation &+ length > VxlanPort.sendSlotSize {
            shortfall = .tooLong
            return false
        }
        // The push made room for a whole super-frame; a flood list of hundreds of VTEPs may still run out.
        if !port.hasRoom(burst, bytes: VxlanPort.encapsulation &+ length, datagrams: 1, copies: copies) {
            shortfall = .txFull
            return false
        }
        self.length = length
        return true
    }

    @inlinable
    mutating func write(_ source: UnsafeRawPointer, count: Int, at offset: Int) {
        // SAFETY: beginSegment checked that the datagram fits the arena after
        // the bytes in use; the segmenter writes only inside the length it announced.
        (port.sendBuffers + (burst.arenaUsed &+ VxlanPort.encapsulation &+ offset))
            .copyMemory(from: source, byteCount: count)
    }

    @inlinable
    mutating func endSegment(header _: VirtioNetHeader) {
        // The wire takes no virtio-net header: every checksum was computed (`.complete`).
        let buffer = port.sendBuffers + burst.arenaUsed
        if flow < 0 { flow = port.flowSender(of: buffer + VxlanPort.encapsulation, length: length) }
        port.record(&burst, at: buffer, innerLength: length, targets: targets, copies: copies, flow: flow)
    }
}
