extension PacketBatch {
    /// Copies frame `frame` into `destination`, one contiguous buffer, for a
    /// port whose wire takes a frame in one piece and has no checksum offload
    /// (AF_XDP, AF_PACKET), and finishes its partial checksum there. Returns
    /// why it cannot be sent, or nil when `destination` holds it ready.
    ///
    /// `limit` is what the buffer holds; `untaggedLimit` the longest frame
    /// without an 802.1Q tag the interface sends (MTU plus Ethernet header):
    /// like the kernel, a frame may pass it by the 4 bytes of a tag only when
    /// its EtherType is 802.1Q.
    @inlinable
    public func gather(_ frame: Int, into destination: UnsafeMutableRawPointer, limit: Int,
                       untaggedLimit: Int) -> DropReason? {
        let length = Int(self.lengths[frame])
        if length < Ethernet.headerSize { return .runt }
        if length > limit || length > untaggedLimit &+ Ethernet.tagSize { return .tooLong }
        // Segments shorter than the length the batch gives: not a whole frame.
        if copyWhole(frame, length: length, to: destination) != length { return .runt }
        // SAFETY: copyWhole wrote `length` >= Ethernet.headerSize bytes to destination (both tested
        // above), so the EtherType's two bytes are there.
        if length > untaggedLimit
            && destination.load(fromByteOffset: Ethernet.etherTypeOffset, as: UInt16.self) != Ethernet.tpidCustomerVLAN.bigEndian {
            return .tooLong
        }
        if !ChecksumCompletion.complete(frame: destination, length: length, header: header(frame)) {
            return .badChecksumOffset
        }
        return nil
    }

    /// Copies frame `frame` for a port whose kernel takes offloads (AF_PACKET
    /// with PACKET_VNET_HDR): its virtio-net header's first 10 bytes, then the
    /// frame, into `destination`; returns why it cannot be sent, or nil.
    ///
    /// `limit` is what the buffer holds, the header included. An ordinary
    /// frame keeps to `untaggedLimit` (plus a tag) as in `gather`; a GSO frame
    /// only to `limit`, since the kernel (or the driver) cuts it into segments
    /// (it was checked where it came in: `Worker.isRefusedGSO`). A checksum
    /// request is left to the kernel, which refuses one outside the frame: such
    /// a frame is `bad_checksum_offset` here, counted before the kernel would
    /// skip it unseen. Only NEEDS_CSUM goes on among the flags.
    @inlinable
    public func gatherWithVirtioNetHeader(_ frame: Int, into destination: UnsafeMutableRawPointer, limit: Int,
                                          untaggedLimit: Int) -> DropReason? {
        let length = Int(self.lengths[frame])
        if length < Ethernet.headerSize { return .runt }
        let fields = VirtioNetHeader(loading: header(frame))
        let superFrame = fields.gsoType != VirtioNetHeader.gsoNone
        if length > limit &- Self.transmittedHeaderSize { return .tooLong }
        if !superFrame && length > untaggedLimit &+ Ethernet.tagSize { return .tooLong }
        // SAFETY: length <= limit - transmittedHeaderSize (tested above): the header and the frame both
        // fit the caller's `limit` bytes; the EtherType read follows a copy of length >= 14 bytes.
        let data = destination + Self.transmittedHeaderSize
        if copyWhole(frame, length: length, to: data) != length { return .runt }
        if !superFrame && length > untaggedLimit
            && data.load(fromByteOffset: Ethernet.etherTypeOffset, as: UInt16.self) != Ethernet.tpidCustomerVLAN.bigEndian {
            return .tooLong
        }
        var sent = fields
        sent.flags &= VirtioNetHeader.needsChecksum
        if sent.flags != 0 && Int(sent.checksumStart) &+ Int(sent.checksumOffset) &+ 2 > length {
            return .badChecksumOffset
        }
        sent.store(to: destination)
        return nil
    }

    /// Copies up to `length` bytes of frame `frame`'s segments to `destination`; returns how many it had.
    @inlinable
    func copyWhole(_ frame: Int, length: Int, to destination: UnsafeMutableRawPointer) -> Int {
        // SAFETY: frame < count, its segments from the batch invariant; each piece is at most the
        // segment's length and at most `length - copied`, and every caller checked `length` against the
        // destination's room.
        var copied = 0
        var s = Int(firstSegments[frame])
        let end = s &+ Int(segmentCounts[frame])
        while s < end && copied < length {
            let piece = min(Int(segmentLengths[s]), length &- copied)
            (destination + copied).copyMemory(from: segmentBases[s], byteCount: piece)
            copied &+= piece
            s &+= 1
        }
        return copied
    }

    /// The virtio-net header as a packet socket takes it: struct virtio_net_hdr, no num_buffers.
    @inlinable public static var transmittedHeaderSize: Int { 10 }
}
