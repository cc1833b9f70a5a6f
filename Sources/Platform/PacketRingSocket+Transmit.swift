import CFerry
import Glibc

// Filling the transmit ring (packet_mmap.rst, "Transmission process"): a
// free slot is TP_STATUS_AVAILABLE; we write the frame and its length and
// mark it TP_STATUS_SEND_REQUEST; one `sendto` makes the kernel walk the
// ring from where it stopped, taking each requested slot in order (SENDING,
// then AVAILABLE again once the driver is done with it). The kernel stops at
// the first slot it cannot take now (the driver's queue is full, the send
// buffer is spent, the interface went away) and leaves that slot and every
// later one requested, so what it did not take is always the tail of the burst.

/// What became of a burst handed to the kernel.
public struct TransmitFlush {
    /// Frames of the burst the kernel did not take; their slots are free again.
    public let notTaken: Int
    /// Their bytes, virtio-net headers left out.
    public let notTakenBytes: UInt64
    /// The errno `sendto` returned, 0 if none. EAGAIN (the send buffer is
    /// full) and ENOBUFS (the driver's queue is full) mean "not now".
    public let error: Int32

    @usableFromInline
    init(notTaken: Int, notTakenBytes: UInt64, error: Int32) {
        self.notTaken = notTaken
        self.notTakenBytes = notTakenBytes
        self.error = error
    }

    /// The kernel would not take the frames now, but nothing is wrong.
    @inlinable public var wouldBlock: Bool { error == EAGAIN || error == ENOBUFS }
}

extension PacketRingSocket {
    /// The longest frame a slot holds, its virtio-net header (`headerSize`) included.
    @inlinable
    public var transmitSlotCapacity: Int { slotSize &- Self.transmitFrameOffset }

    /// Where the next frame goes (`transmitSlotCapacity` bytes), or nil when
    /// the slot is still the kernel's: the ring is full.
    @inlinable
    public func nextTransmitSlot() -> UnsafeMutableRawPointer? {
        // SAFETY: transmitHead < slotCount (it wraps at slotCount), so the slot's tpacket3_hdr (status
        // at its start) and the frame room after transmitFrameOffset lie in the slotCount * slotSize
        // bytes mapped at base.
        guard let base = transmitBase else { return nil }
        let slot = base + transmitHead &* slotSize
        // Acquire: the kernel is done reading the slot before it marks it available.
        if ferry_load_acquire_u32(slot + Int(FERRY_TPACKET3_STATUS)) != FERRY_TP_STATUS_AVAILABLE { return nil }
        return slot + Self.transmitFrameOffset
    }

    /// Requests the slot `nextTransmitSlot` returned, holding a frame of
    /// `length` bytes (at most `transmitSlotCapacity`; with PACKET_VNET_HDR its
    /// virtio-net header first, counted in `length`), and moves to the next.
    @inlinable
    public func commitTransmitSlot(length: Int) {
        // SAFETY: called only for the slot nextTransmitSlot returned (so transmitBase is set, and
        // transmitHead < slotCount); the header's length, next-offset and status words lie at the
        // slot's start.
        let slot = transmitBase.unsafelyUnwrapped + transmitHead &* slotSize
        slot.storeBytes(of: UInt32(truncatingIfNeeded: length), toByteOffset: Int(FERRY_TPACKET3_LEN), as: UInt32.self)
        // V3 transmit slots are fixed-size; the kernel refuses a chained one.
        slot.storeBytes(of: 0, toByteOffset: Int(FERRY_TPACKET3_NEXT_OFFSET), as: UInt32.self)
        // Release: the frame and its length are written before the kernel sees the request.
        ferry_store_release_u32(slot + Int(FERRY_TPACKET3_STATUS), FERRY_TP_STATUS_SEND_REQUEST)
        transmitHead = transmitHead &+ 1 == slotCount ? 0 : transmitHead &+ 1
        transmitPending &+= 1
    }

    /// Hands the slots committed since the last flush to the kernel with one
    /// `sendto` and frees the ones it did not take.
    ///
    /// The call does not go through `syscall`: EAGAIN, ENOBUFS and even
    /// ENETDOWN are results a busy or unplugged link gives burst after burst,
    /// and naming them in a `SystemError` would build a string each time.
    @inlinable
    public func flushTransmit() -> TransmitFlush {
        let pending = transmitPending
        if pending == 0 { return TransmitFlush(notTaken: 0, notTakenBytes: 0, error: 0) }
        transmitPending = 0
        var error: Int32 = 0
        while true {
            if sendto(fd, nil, 0, Int32(MSG_DONTWAIT), nil, 0) >= 0 { break }
            error = errno
            if error == EINTR { error = 0; continue }
            precondition(error != EBADF && error != EFAULT, "sendto(packet \(interface)) returned \(error): a bug in Ferry")
            break
        }
        // Slots still requested are the burst's tail the kernel stopped before
        // (even a successful call stops where the send buffer is spent). Only
        // `sendto` reads requested slots and it has returned, so they are
        // ours to free; the kernel's position stays at the first of them,
        // where the next burst begins.
        var notTaken = 0
        var bytes: UInt64 = 0
        // SAFETY: pending > 0 means commitTransmitSlot ran, which only follows a slot from a set
        // transmitBase; previous < slotCount, so each slot's header lies in the mapped ring.
        let base = transmitBase.unsafelyUnwrapped
        while notTaken < pending {
            let previous = transmitHead == 0 ? slotCount &- 1 : transmitHead &- 1
            let slot = base + previous &* slotSize
            if ferry_load_acquire_u32(slot + Int(FERRY_TPACKET3_STATUS)) != FERRY_TP_STATUS_SEND_REQUEST { break }
            // The frame's bytes, without the virtio-net header in front of it.
            bytes &+= UInt64(slot.load(fromByteOffset: Int(FERRY_TPACKET3_LEN), as: UInt32.self)) &- UInt64(headerSize)
            ferry_store_release_u32(slot + Int(FERRY_TPACKET3_STATUS), FERRY_TP_STATUS_AVAILABLE)
            transmitHead = previous
            notTaken &+= 1
        }
        return TransmitFlush(notTaken: notTaken, notTakenBytes: bytes, error: error)
    }
}
