/// How a frame's 802.1Q tag changes on its way to one port.
public enum TagEdit {
    /// The frame leaves as it came.
    case keep
    /// A tag (4 bytes at `tag`) goes in after the MAC addresses: untagged in, trunk out.
    case insert(UnsafeRawPointer)
    /// The tag after the MAC addresses is left out: trunk in, access out.
    case remove
}

extension PacketBatch {
    /// Segments `appendReference` may add to a frame (a split around the tag, and the tag).
    public static let segmentsAddedByTagEdit = 2

    /// Appends frame `frame` of `source` as a reference: the same bytes, no copy,
    /// with its tag pushed or popped by choosing which byte ranges the new
    /// segments cover. The virtio-net header comes along; offsets in it that
    /// count from the start of the frame move with the tag.
    ///
    /// The caller checked `room > 0`, `freeSegments >= segments + segmentsAddedByTagEdit`
    /// and, for `.remove`, that the frame is tagged (at least 18 bytes).
    @inlinable
    public func appendReference(to frame: Int, of source: PacketBatch, edit: TagEdit) {
        // SAFETY: the caller checked room > 0 (i < capacity) and freeSegments >= the frame's segments +
        // 2, and `out` adds at most 2 to them (an insert splits one segment and adds the tag; a remove
        // splits one), so every write stays below segmentCapacity; `frame` and its segments are the
        // source's (its batch invariant); `base + cut` and `base + from` stay inside their segment (cut
        // <= len and from < len, by the tests just before); the tag is VLANTagTable's read-only 4
        // bytes, made mutable only for the segment array's type: destinations read segments, never
        // write them.
        let i = count
        let first = segmentCount
        var out = first
        let start = Int(source.firstSegments[frame])
        let end = start &+ Int(source.segmentCounts[frame])
        var length = Int(source.lengths[frame])
        var delta = 0
        switch edit {
        case .keep:
            var s = start
            while s < end {
                segmentBases[out] = source.segmentBases[s]
                segmentLengths[out] = source.segmentLengths[s]
                out &+= 1
                s &+= 1
            }
        case .insert(let tag):
            var offset = 0
            var inserted = false
            var s = start
            while s < end {
                let base = source.segmentBases[s]
                let len = Int(source.segmentLengths[s])
                if !inserted && offset &+ len >= Ethernet.etherTypeOffset {
                    let cut = Ethernet.etherTypeOffset &- offset
                    if cut > 0 {
                        segmentBases[out] = base
                        segmentLengths[out] = UInt32(truncatingIfNeeded: cut)
                        out &+= 1
                    }
                    segmentBases[out] = UnsafeMutableRawPointer(mutating: tag)
                    segmentLengths[out] = UInt32(Ethernet.tagSize)
                    out &+= 1
                    if len > cut {
                        segmentBases[out] = base + cut
                        segmentLengths[out] = UInt32(truncatingIfNeeded: len &- cut)
                        out &+= 1
                    }
                    inserted = true
                } else if len > 0 {
                    segmentBases[out] = base
                    segmentLengths[out] = UInt32(truncatingIfNeeded: len)
                    out &+= 1
                }
                offset &+= len
                s &+= 1
            }
            length &+= Ethernet.tagSize
            delta = Ethernet.tagSize
        case .remove:
            // Keep [0, 12) and [16, end) of the frame, across whatever segments hold them.
            let cutStart = Ethernet.etherTypeOffset
            let cutEnd = Ethernet.etherTypeOffset &+ Ethernet.tagSize
            var offset = 0
            var s = start
            while s < end {
                let base = source.segmentBases[s]
                let len = Int(source.segmentLengths[s])
                let segEnd = offset &+ len
                if offset < cutStart {
                    let keep = min(len, cutStart &- offset)
                    segmentBases[out] = base
                    segmentLengths[out] = UInt32(truncatingIfNeeded: keep)
                    out &+= 1
                }
                if segEnd > cutEnd {
                    let from = max(0, cutEnd &- offset)
                    segmentBases[out] = base + from
                    segmentLengths[out] = UInt32(truncatingIfNeeded: len &- from)
                    out &+= 1
                }
                offset = segEnd
                s &+= 1
            }
            length &-= Ethernet.tagSize
            delta = -Ethernet.tagSize
        }
        let h = header(i)
        h.copyMemory(from: source.header(frame), byteCount: Self.headerSize)
        if delta != 0 { Self.shiftHeaderOffsets(h, by: delta) }
        firstSegments[i] = UInt32(truncatingIfNeeded: first)
        segmentCounts[i] = UInt16(truncatingIfNeeded: out &- first)
        self.lengths[i] = UInt32(truncatingIfNeeded: length)
        tokens[i] = source.tokens[frame]
        tunnelEndpoints[i] = source.tunnelEndpoints[frame]
        segmentCount = out
        count = i &+ 1
    }

    /// The virtio-net header counts csum_start (with NEEDS_CSUM) and hdr_len (with
    /// GSO) from the start of the frame (virtio 1.2 §5.1.6.2); a tag moves both.
    @inlinable
    static func shiftHeaderOffsets(_ h: UnsafeMutableRawPointer, by delta: Int) {
        // SAFETY: h is a frame's header slot in the batch (headerStride bytes); offsets 0..7 lie inside
        // it.
        let flags = h.load(as: UInt8.self)
        let gsoType = h.load(fromByteOffset: 1, as: UInt8.self)
        // VIRTIO_NET_HDR_F_NEEDS_CSUM
        if flags & 1 != 0 {
            let v = UInt16(littleEndian: h.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
            h.storeBytes(of: UInt16(truncatingIfNeeded: Int(v) &+ delta).littleEndian, toByteOffset: 6, as: UInt16.self)
        }
        // Anything but VIRTIO_NET_HDR_GSO_NONE.
        if gsoType != 0 {
            let v = UInt16(littleEndian: h.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
            h.storeBytes(of: UInt16(truncatingIfNeeded: Int(v) &+ delta).littleEndian, toByteOffset: 2, as: UInt16.self)
        }
    }
}
