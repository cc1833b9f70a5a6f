import CFerry

// Walking the TPACKET_V3 receive ring (packet_mmap.rst, "TPACKET_V3"). The
// kernel fills block after block; a block whose status has TP_STATUS_USER is
// ours, with `num_pkts` frames chained by `tp_next_offset` from
// `offset_to_first_pkt`. A block goes back (TP_STATUS_KERNEL) only as a whole,
// so it is given back once every frame in it was handed out *and* copied on:
// handing out marks it consumed, `returnConsumedBlocks` gives consumed blocks
// back. While a block is ours the kernel skips nothing: when it reaches a
// block still ours it drops frames until we give it back.
//
// The ring is written by the kernel alone (no other process maps it), so its
// offsets are trusted as the kernel's own.

/// One frame in the receive ring, valid until its block is given back.
public struct PacketRingFrame {
    /// The frame from its Ethernet header on, as it was on the wire (see `nextReceivedFrame`).
    public let data: UnsafeMutableRawPointer
    /// Bytes of it in the ring.
    public let length: Int
    /// Bytes it had: more than `length` when it was longer than the ring's
    /// `frameSizeLimit` and was cut.
    public let wireLength: Int
    /// The ring block it lies in.
    public let block: Int
    /// Its virtio-net header (10 bytes, in the ring), nil without PACKET_VNET_HDR.
    /// The kernel wrote it; it is still checked like a guest's before use.
    public let virtioNetHeader: UnsafeRawPointer?

    @usableFromInline
    init(data: UnsafeMutableRawPointer, length: Int, wireLength: Int, block: Int, virtioNetHeader: UnsafeRawPointer?) {
        self.data = data
        self.length = length
        self.wireLength = wireLength
        self.block = block
        self.virtioNetHeader = virtioNetHeader
    }

    /// A frame whose tail the kernel cut to fit the ring.
    @inlinable public var isCut: Bool { length < wireLength }
}

extension PacketRingSocket {
    /// Where a V3 frame header ends and the kernel's padding before the frame
    /// begins (TPACKET_ALIGN(sizeof(struct tpacket3_hdr))); the sockaddr_ll
    /// the kernel writes there is not read.
    @usableFromInline static let receiveHeaderEnd = 48
    /// The 802.1Q tag and where it goes: after the destination and source MACs.
    @usableFromInline static let tagSize = 4
    @usableFromInline static let macAddressesSize = 12
    /// VIRTIO_NET_HDR_F_NEEDS_CSUM and VIRTIO_NET_HDR_GSO_NONE (linux/virtio_net.h).
    @usableFromInline static let needsChecksumFlag: UInt8 = 1
    @usableFromInline static let gsoNone: UInt8 = 0

    /// The next frame the kernel handed over, or nil when it has handed over
    /// no more (or every block is ours, waiting to be given back).
    ///
    /// The kernel takes an 802.1Q tag off every tagged frame it receives
    /// (skb_vlan_untag) and reports it in the frame's header; here it is put
    /// back in front of the EtherType, in the padding the ring leaves before
    /// each frame, so a frame comes out byte for byte as it was on the wire.
    /// With PACKET_VNET_HDR the frame's virtio-net header lies right before it
    /// (tpacket_rcv: `h.raw + macoff - sizeof(struct virtio_net_hdr)`); a tag put
    /// back moves it 4 bytes down first, and moves its offsets, which count from
    /// the untagged frame (the kernel adds no VLAN_HLEN there), 4 bytes on.
    @inlinable
    public func nextReceivedFrame() -> PacketRingFrame? {
        guard let base = receiveBase else { return nil }
        while framesLeftInBlock == 0 {
            if consumedBlocks == blockCount { return nil }
            // SAFETY: currentBlock < blockCount (it wraps to 0 at blockCount), and the mapping holds
            // blockCount * blockSize bytes at base; the block descriptor's status, count and
            // first-frame offset are the kernel's fields at its start (tpacket_block_desc), and `first`
            // is the kernel's offset of a frame inside the block.
            let block = base + currentBlock &* blockSize
            // Acquire: the kernel writes the frames, then the status (prb_close_block: smp_wmb).
            let status = ferry_load_acquire_u32(block + Int(FERRY_TPACKET_BLOCK_STATUS))
            if status & FERRY_TP_STATUS_USER == 0 { return nil }
            let frames = Int(block.load(fromByteOffset: Int(FERRY_TPACKET_BLOCK_NUM_PKTS), as: UInt32.self))
            let first = Int(block.load(fromByteOffset: Int(FERRY_TPACKET_BLOCK_FIRST_PKT), as: UInt32.self))
            if frames == 0 {
                // Nothing in it to wait for: it goes back now if it is the
                // oldest we hold, with the others otherwise.
                finishBlock(returnAtOnce: consumedBlocks == 0)
                continue
            }
            framesLeftInBlock = frames
            nextFrameHeader = block + first
        }
        // SAFETY: framesLeftInBlock > 0 only after a block was opened and nextFrameHeader set.
        let header = nextFrameHeader.unsafelyUnwrapped
        let snapLength = Int(header.load(fromByteOffset: Int(FERRY_TPACKET3_SNAPLEN), as: UInt32.self))
        let wireLength = Int(header.load(fromByteOffset: Int(FERRY_TPACKET3_LEN), as: UInt32.self))
        let mac = Int(header.load(fromByteOffset: Int(FERRY_TPACKET3_MAC), as: UInt16.self))
        let frameStatus = header.load(fromByteOffset: Int(FERRY_TPACKET3_STATUS), as: UInt32.self)
        var data = header + mac
        var length = snapLength
        var onWire = wireLength
        let offloads = headerSize
        var virtioHeader: UnsafeMutableRawPointer? = offloads == 0 ? nil : data - offloads
        // tpacket_rcv puts the frame at least 16 bytes past the header and
        // sockaddr_ll (68 bytes), then the virtio-net header, so the 4 bytes
        // before it (before the virtio-net header) are padding we own while the
        // block is ours; the check only guards against a kernel that one day
        // packs tighter.
        if frameStatus & FERRY_TP_STATUS_VLAN_VALID != 0 && snapLength >= Self.macAddressesSize
            && mac >= Self.receiveHeaderEnd &+ offloads &+ Self.tagSize {
            if let old = virtioHeader {
                let moved = old - Self.tagSize
                moved.copyMemory(from: old, byteCount: offloads)
                Self.shiftOffsets(ofVirtioNetHeader: moved, by: Self.tagSize)
                virtioHeader = moved
            }
            let tci = UInt16(truncatingIfNeeded: header.load(fromByteOffset: Int(FERRY_TPACKET3_VLAN_TCI), as: UInt32.self))
            let tpid = frameStatus & FERRY_TP_STATUS_VLAN_TPID_VALID != 0
                ? header.load(fromByteOffset: Int(FERRY_TPACKET3_VLAN_TPID), as: UInt16.self) : 0x8100
            let tagged = data - Self.tagSize
            tagged.copyMemory(from: data, byteCount: Self.macAddressesSize)
            tagged.storeBytes(of: tpid.bigEndian, toByteOffset: Self.macAddressesSize, as: UInt16.self)
            tagged.storeBytes(of: tci.bigEndian, toByteOffset: Self.macAddressesSize &+ 2, as: UInt16.self)
            data = tagged
            length &+= Self.tagSize
            onWire &+= Self.tagSize
        }
        let block = currentBlock
        framesLeftInBlock &-= 1
        if framesLeftInBlock == 0 {
            finishBlock(returnAtOnce: false)
        } else {
            nextFrameHeader = header + Int(header.load(fromByteOffset: Int(FERRY_TPACKET3_NEXT_OFFSET), as: UInt32.self))
        }
        return PacketRingFrame(data: data, length: length, wireLength: onWire, block: block,
                               virtioNetHeader: virtioHeader.map { UnsafeRawPointer($0) })
    }

    /// csum_start (and hdr_len, the headers' length) of the virtio-net header at
    /// `header` moved `bytes` on: the frame got a tag in front of its EtherType.
    /// Wrapping adds: the result is checked against the frame like any header's.
    @inlinable
    static func shiftOffsets(ofVirtioNetHeader header: UnsafeMutableRawPointer, by bytes: Int) {
        // SAFETY: `header` is the 10-byte virtio-net header the kernel put right before a frame in our
        // block (nextReceivedFrame moved it there): offsets 0..7 lie inside it.
        let shift = UInt16(truncatingIfNeeded: bytes)
        if header.load(as: UInt8.self) & needsChecksumFlag != 0 {
            let start = UInt16(littleEndian: header.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
            header.storeBytes(of: (start &+ shift).littleEndian, toByteOffset: 6, as: UInt16.self)
        }
        if header.load(fromByteOffset: 1, as: UInt8.self) != gsoNone {
            let headers = UInt16(littleEndian: header.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
            header.storeBytes(of: (headers &+ shift).littleEndian, toByteOffset: 2, as: UInt16.self)
        }
    }

    /// Gives back every block all of whose frames were handed out: call it once
    /// the frames of the last `nextReceivedFrame` calls were copied on. A block
    /// partly handed out stays ours until a later call finishes it.
    @inlinable
    public func returnConsumedBlocks() {
        // SAFETY: firstHeldBlock < blockCount (it wraps at blockCount), so the status word lies in the
        // mapped ring.
        guard let base = receiveBase else { return }
        while consumedBlocks > 0 {
            // Release: our reads of the block are done before the kernel may refill it.
            ferry_store_release_u32(base + firstHeldBlock &* blockSize + Int(FERRY_TPACKET_BLOCK_STATUS),
                                    FERRY_TP_STATUS_KERNEL)
            firstHeldBlock = firstHeldBlock &+ 1 == blockCount ? 0 : firstHeldBlock &+ 1
            consumedBlocks &-= 1
        }
    }

    /// Moves past the current block, which is consumed; `returnAtOnce` gives it
    /// back now (it must then be the oldest block held).
    @inlinable
    func finishBlock(returnAtOnce: Bool) {
        consumedBlocks &+= 1
        currentBlock = currentBlock &+ 1 == blockCount ? 0 : currentBlock &+ 1
        nextFrameHeader = nil
        if returnAtOnce { returnConsumedBlocks() }
    }

    /// Blocks that are ours now (handed over and not given back), for tests.
    public var receiveRingBlocksHeld: Int {
        guard let base = receiveBase else { return 0 }
        var held = 0
        // SAFETY: b < blockCount: each status word lies in the blockCount * blockSize bytes mapped at
        // base.
        for b in 0..<blockCount where ferry_load_acquire_u32(base + b * blockSize + Int(FERRY_TPACKET_BLOCK_STATUS))
            & FERRY_TP_STATUS_USER != 0 {
            held += 1
        }
        return held
    }
}
