import Glibc
import Packets

/// What became of one device-readable (TX) chain gathered into a batch.
@usableFromInline
enum GatheredChain {
    case frame
    /// Walked to its end and checked, but not a frame to forward.
    case dropped(DropReason)
    /// More segments than the batch has left; nothing was appended.
    case noRoom
    /// The chain broke a rule; the queue must stop with this error.
    case broken(VirtqueueError)
}

/// A device-readable chain taken into a `PacketBatch` without copying: the
/// first `headerLength` bytes go to the frame's header slot, the rest become
/// segments pointing into guest memory. Both ring layouts pull through it; only
/// how a chain's descriptors are found differs (the `DescriptorSource`).
@usableFromInline
enum TransmitChain {
    /// Appends the frame of a chain of one buffer, found and checked by a pull's
    /// run (either layout's `+SingleBuffers`): the 12-byte header at `buffer`
    /// copied into the batch's next header slot, the `length - 12` bytes behind
    /// it made segment `segment`. Returns the frame's length.
    @inlinable
    static func appendSingleBuffer(_ buffer: UnsafeMutableRawPointer, length: UInt32, segment: Int,
                                   to batch: PacketBatch) -> UInt32 {
        // SAFETY: the run translated `length` >= headerSize + Ethernet.headerSize bytes at buffer, so
        // the 12-byte header is inside it and the frame behind it is length - headerSize bytes;
        // header(batch.count) is the next frame's 16-byte slot and `segment` below segmentCapacity
        // (the run takes at most the batch's room and its free segments).
        let header = batch.header(batch.count)
        header.storeBytes(of: buffer.loadUnaligned(as: UInt64.self), as: UInt64.self)
        header.storeBytes(of: buffer.loadUnaligned(fromByteOffset: 8, as: UInt32.self), toByteOffset: 8, as: UInt32.self)
        let frameLength = length &- UInt32(PacketBatch.headerSize)
        batch.setSegment(segment, base: buffer + PacketBatch.headerSize, length: frameLength)
        batch.appendFrame(segments: segment ..< segment &+ 1, length: frameLength)
        return frameLength
    }

    /// Walks the chain `walker` yields to its end, every descriptor checked
    /// (readable, inside guest memory, the frame no longer than `maxFrameLength`),
    /// and appends it to `batch` as one frame.
    @inlinable
    static func gather<Source: DescriptorSource>(
        _ walker: inout Source, into batch: PacketBatch, headerLength: Int, maxFrameLength: UInt32,
        memory mem: GuestMemory
    ) -> GatheredChain {
        let frame = batch.count
        // SAFETY: frame = batch.count and the callers pull at most `room` chains, so header(frame) is a
        // whole 16-byte slot; headerLength is the negotiated 10 or 12 (netHeaderLength), and each copy
        // into the slot takes at most headerLeft bytes, so it stays in its first headerLength bytes
        // (num_buffers at 10 too); the source of each copy is the translated piece, `body` bytes at ptr
        // (body >= 12, take <= body), and ptr moves only past bytes it copied.
        let header = batch.header(frame)
        var headerLeft = headerLength
        var total: UInt64 = 0
        let firstSegment = batch.segmentCount
        var segments = 0
        let freeSegments = batch.freeSegments
        var overflowed = false
        while let step = walker.next(memory: mem) {
            let d: Descriptor
            switch step {
            case .failure(let e): return .broken(e)
            case .success(let value): d = value
            }
            if d.writable { return .broken(.writableInDriverChain) }
            total &+= UInt64(d.length)
            if total > UInt64(maxFrameLength) { return .broken(.frameTooLong(total)) }
            // A chain too long for the batch is still walked to its end, so a
            // hostile chain cannot hide a loop behind the segment limit.
            if overflowed { continue }
            var address = d.address
            var left = d.length
            while left > 0 {
                guard let (p, piece) = mem.translatePiece(GuestAddress(address), length: left) else {
                    return .broken(.descriptorAddressInvalid(address: d.address, length: d.length))
                }
                var ptr = p
                var body = piece
                if headerLeft == 12 && body >= 12 {
                    // The usual case, a whole 12-byte header in one piece: two moves, no call.
                    header.storeBytes(of: ptr.loadUnaligned(as: UInt64.self), as: UInt64.self)
                    header.storeBytes(of: ptr.loadUnaligned(fromByteOffset: 8, as: UInt32.self), toByteOffset: 8,
                                      as: UInt32.self)
                    headerLeft = 0
                    ptr += 12
                    body &-= 12
                } else if headerLeft > 0 {
                    let take = Int(body) < headerLeft ? Int(body) : headerLeft
                    memcpy(header + (headerLength &- headerLeft), ptr, take)
                    headerLeft &-= take
                    ptr += take
                    body &-= UInt32(take)
                }
                if body > 0 {
                    if segments == freeSegments { overflowed = true; break }
                    batch.setSegment(firstSegment &+ segments, base: ptr, length: body)
                    segments &+= 1
                }
                address &+= UInt64(piece)
                left &-= piece
            }
        }
        if overflowed { return .noRoom }
        // A frame needs at least an Ethernet header behind the virtio-net header.
        if headerLeft > 0 || total < UInt64(headerLength &+ Ethernet.headerSize) { return .dropped(.runt) }
        if headerLength < PacketBatch.headerSize {
            // Legacy 10-byte header: num_buffers is absent.
            header.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
        }
        batch.appendFrame(segments: firstSegment ..< firstSegment &+ segments,
                          length: UInt32(truncatingIfNeeded: total) &- UInt32(headerLength))
        return .frame
    }
}
