import Packets
import Platform

/// A vxlan port's push through an `xdp:` uplink (`via=`, VxlanUnderlay.swift):
/// every datagram becomes an Ethernet frame in the underlay batch, its outer
/// headers (Ethernet, IP, UDP, VXLAN) in a block of their own, then the inner
/// frame by reference to where it already is (the source's buffers), so the
/// uplink's copy into its UMEM frame is the inner frame's only one. Head-end
/// replication is one frame per VTEP, each with its own block, sharing the
/// inner frame's segments.
///
/// A GSO frame is cut into the port's send arena first (as for the socket
/// path), and each segment goes as above from there: two copies for TCP
/// super-frames, which the uplink (AF_XDP) could not take anyway.
///
/// An inner frame's partial checksum travels on (its start moved past the
/// outer headers) and the uplink finishes it while copying; over IPv6 the
/// outer UDP checksum is the one finished there, so such a port takes no
/// partial checksum (`Port.offloadAcceptance`): the worker finishes inner ones first.
extension VxlanPort {
    /// Encapsulates every frame of `batch` for the uplink and hands the frames
    /// to `send`, in bursts of up to the underlay batch's capacity.
    // SAFETY: d runs over the datagrams the segmenter recorded in the arena (< messagesPerSend,
    // SAFETY: the size of the datagram tables); each datagram's offset and length lie in the arena (`record`).
    @inlinable
    public func pushThroughUnderlay(from batch: PacketBatch, segmenter: SoftwareSegmenter?,
                                    send: (PacketBatch) -> Void) {
        guard let underlay else { return }
        let counters = socketCounters
        let limit = maxInnerFrameLength
        let known = endpoints.count
        let floodCount = endpoints.floodCount
        let out = underlay.out
        out.reset()
        var burst = SendBurst()
        var sent = 0
        var sentBytes: UInt64 = 0
        for frame in 0..<batch.count {
            guard let (first, last) = Self.endpoints(of: batch.tunnelEndpoint(of: frame), known: known,
                                                     floodCount: floodCount) else {
                counters.dropped(.noDestination)
                continue
            }
            if let segmenter, batch.header(frame).load(fromByteOffset: 1, as: UInt8.self) != VirtioNetHeader.gsoNone {
                let copies = last &- first &+ 1
                if !hasRoom(burst, bytes: Self.superFrameRoom, datagrams: SoftwareSegmenter.maxSegmentsPerFrame,
                            copies: copies) {
                    // The arena is reused: what refers to it goes first.
                    if out.count > 0 { send(out) }
                    out.reset()
                    burst = SendBurst()
                }
                let firstDatagram = burst.datagrams
                let targets = UInt32(truncatingIfNeeded: first) | UInt32(truncatingIfNeeded: last) << 16
                var sink = TunnelSegmentSink(port: self, burst: burst, targets: targets, copies: copies)
                segmenter.transmit(batch.frameSegments(frame), header: batch.header(frame), checksum: .complete,
                                   untaggedLimit: limit, into: &sink, counters: counters)
                burst = sink.burst
                var d = firstDatagram
                while d < burst.datagrams {
                    let length = datagramLengths[d]
                    let inner = sendBuffers + (datagramOffsets[d] &+ Self.encapsulation)
                    let sourcePort = flowSourcePorts[Int(datagramFlows[d])]
                    var e = max(first, 1)
                    while e <= last {
                        if first != 0 || endpoints.floods(e) {
                            if encapsulate(to: e, inner: inner, length: length, from: nil, frame: 0,
                                           sourcePort: sourcePort, underlay: underlay, counters: counters, send: send) {
                                sent &+= 1
                                sentBytes &+= UInt64(length)
                            }
                        }
                        e &+= 1
                    }
                    d &+= 1
                }
                continue
            }
            let length = batch.length(of: frame)
            if length > limit {
                counters.dropped(.tooLong)
                continue
            }
            if length < Ethernet.headerSize {
                counters.dropped(.runt)
                continue
            }
            if batch.segmentCount(of: frame) &+ 1 > out.segmentCapacity {
                counters.dropped(.tooManySegments)
                continue
            }
            let sourcePort = flowSourcePort(batch, frame, length: length, scratch: underlay.headerScratch)
            var e = max(first, 1)
            while e <= last {
                if first != 0 || endpoints.floods(e) {
                    if encapsulate(to: e, inner: nil, length: length, from: batch, frame: frame,
                                   sourcePort: sourcePort, underlay: underlay, counters: counters, send: send) {
                        sent &+= 1
                        sentBytes &+= UInt64(length)
                    }
                }
                e &+= 1
            }
        }
        if out.count > 0 { send(out) }
        out.reset()
        if sent > 0 { counters.sent(packets: sent, bytes: sentBytes) }
    }

    /// Adds one frame to VTEP `number` to the underlay batch (handing the batch
    /// to `send` first when full): the outer headers in the frame's block, then
    /// the inner frame: `length` bytes at `inner`, or frame `frame` of `batch`
    /// by reference. False when the VTEP has no outer headers yet (counted).
    @inlinable
    func encapsulate(to number: Int, inner: UnsafeMutableRawPointer?, length: Int, from batch: PacketBatch?,
                     frame: Int, sourcePort: UInt16, underlay: VxlanUnderlay, counters: QueueCounters,
                     send: (PacketBatch) -> Void) -> Bool {
        let which = underlay.template(for: number)
        if which == 0 {
            counters.dropped(.vxlanUnresolvedVTEP)
            return false
        }
        let out = underlay.out
        let innerSegments = batch?.segmentCount(of: frame) ?? 1
        if out.room == 0 || out.freeSegments < innerSegments &+ 1 {
            send(out)
            out.reset()
        }
        let k = out.count
        // SAFETY: k < out.capacity, and `blocks` holds capacity blocks of blockStride bytes.
        let block = underlay.blocks + k &* VxlanUnderlay.blockStride
        let headers = underlay.writeHeaders(number, template: which, into: block, innerLength: length,
                                            sourcePort: sourcePort, destinationPort: udpPort, vni: vni)
        let first = out.segmentCount
        out.setSegment(first, base: block, length: UInt32(truncatingIfNeeded: headers))
        var next = first &+ 1
        out.clearHeader(k)
        let header = out.header(k)
        if let batch {
            for s in batch.segments(of: frame) {
                out.setSegment(next, base: batch.segmentBase(s), length: UInt32(truncatingIfNeeded: batch.segmentLength(s)))
                next &+= 1
            }
            let source = batch.header(frame)
            if source.load(as: UInt8.self) & VirtioNetHeader.needsChecksum != 0 {
                // The inner checksum is finished where the uplink copies the frame, past the outer headers.
                let start = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
                header.storeBytes(of: VirtioNetHeader.needsChecksum, as: UInt8.self)
                header.storeBytes(of: (start &+ UInt16(truncatingIfNeeded: headers)).littleEndian, toByteOffset: 6,
                                  as: UInt16.self)
                header.storeBytes(of: source.loadUnaligned(fromByteOffset: 8, as: UInt16.self), toByteOffset: 8,
                                  as: UInt16.self)
            }
        } else if let inner {
            out.setSegment(next, base: inner, length: UInt32(truncatingIfNeeded: length))
            next &+= 1
        }
        if underlay.ipv6 {
            // The outer UDP checksum, over the inner frame too: finished by the uplink's copy.
            header.storeBytes(of: VirtioNetHeader.needsChecksum, as: UInt8.self)
            header.storeBytes(of: UInt16(truncatingIfNeeded: underlay.outerLength).littleEndian, toByteOffset: 6,
                              as: UInt16.self)
            header.storeBytes(of: UInt16(6).littleEndian, toByteOffset: 8, as: UInt16.self)
        }
        out.appendFrame(segments: first..<next, length: UInt32(truncatingIfNeeded: headers &+ length), token: 0)
        endpoints.sent(to: number, bytes: length)
        return true
    }

    /// The outer UDP source port of frame `frame` (RFC 7348 §5: a hash of the
    /// inner flow), its first bytes gathered into `scratch` when its headers are split.
    // SAFETY: at most headerScratchSize bytes are copied into `scratch`, which holds that many;
    // SAFETY: each piece no longer than its segment.
    @inlinable
    func flowSourcePort(_ batch: PacketBatch, _ frame: Int, length: Int, scratch: UnsafeMutableRawPointer) -> UInt16 {
        let segments = batch.segments(of: frame)
        let firstLength = batch.segmentLength(segments.lowerBound)
        let wanted = min(length, VxlanUnderlay.headerScratchSize)
        if firstLength >= wanted {
            return VXLAN.sourcePort(frame: batch.segmentBase(segments.lowerBound), length: wanted)
        }
        var filled = 0
        var s = segments.lowerBound
        while filled < wanted && s < segments.upperBound {
            let take = min(wanted &- filled, batch.segmentLength(s))
            (scratch + filled).copyMemory(from: batch.segmentBase(s), byteCount: take)
            filled &+= take
            s &+= 1
        }
        return VXLAN.sourcePort(frame: scratch, length: filled)
    }
}
