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
        let length = Int(self.length[frame])
        if length < Ethernet.headerSize { return .runt }
        if length > limit || length > untaggedLimit &+ Ethernet.tagSize { return .tooLong }
        var copied = 0
        var s = Int(firstSegment[frame])
        let end = s &+ Int(segments[frame])
        while s < end && copied < length {
            let piece = min(Int(segmentLength[s]), length &- copied)
            (destination + copied).copyMemory(from: segmentBase[s], byteCount: piece)
            copied &+= piece
            s &+= 1
        }
        // Segments shorter than the length the batch gives: not a whole frame.
        if copied != length { return .runt }
        if length > untaggedLimit
            && destination.load(fromByteOffset: Ethernet.etherTypeOffset, as: UInt16.self) != Ethernet.tpidCustomerVLAN.bigEndian {
            return .tooLong
        }
        if !ChecksumCompletion.complete(frame: destination, length: length, header: header(frame)) {
            return .badChecksumOffset
        }
        return nil
    }
}
