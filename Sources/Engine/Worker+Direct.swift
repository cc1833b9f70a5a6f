import CFerry
import Glibc
import Model
import Packets
import Platform
import Ports
import Switching
import Virtio

// TAP → guest with the kernel's copy only.
//
// When every frame of a TAP queue can only go to one guest (an access TAP
// whose VLAN has exactly one other member, an access vhost port this worker
// transmits to without a lock), the worker reads each frame with one `readv`
// straight into that guest's next receive chain instead of into the TAP's
// buffers and copying it again on push.
//
// The guest owns its receive buffers and may rewrite them while we look, so
// nothing is decided from bytes in them: the read's first iovec is a private
// scratch that takes the virtio-net header and the Ethernet header, the chain
// takes the rest. The frame is classified from the scratch (learning, VLAN,
// the forwarding decision) exactly as on the usual path; if it goes to the
// guest, the scratch is written into the chain's first bytes and the chain
// committed, otherwise the chain stays available for the next frame. Where
// the direct path cannot serve (no chain posted, a chain too small for the
// longest frame, a stopped queue), the rest of the burst goes the usual way,
// whose push counts `no_rx_buffer`, `rx_buffer_too_small` or `device_broken`.
extension Worker {
    /// Buffers of one guest chain the direct path takes; a chain in more
    /// pieces (before it holds the longest frame) is served the usual way.
    @usableFromInline static let directPieces = 64
    /// The bytes kept private: the virtio-net header, then the Ethernet header.
    @usableFromInline static let directPrefixLength = PacketBatch.headerSize &+ Ethernet.headerSize

    /// The port every frame of `source` goes to, if the direct path applies;
    /// decided when the worker is configured (ports and VLANs change only then,
    /// together, while the worker is paused), from the membership `members` gives.
    func directPeer(of source: WorkerSource, ports: [WorkerPort], members: (UInt16) -> PortSet) -> Int? {
        guard source.port.directReader(queue: source.queue) != nil, Int(source.index) < ports.count else { return nil }
        let me = ports[Int(source.index)]
        guard !me.isTrunk else { return nil }
        let members = members(me.accessVLAN)
        guard members.count == 2, members.contains(source.index) else { return nil }
        guard let other = members.removing(source.index).first, Int(other) < ports.count else { return nil }
        let peer = Int(other)
        let target = ports[peer]
        guard target.port.guestReceiveRing(target.transmitQueue) != nil, !target.isTrunk, target.transmitLock == nil else {
            return nil
        }
        return peer
    }

    /// Reads frames from `source` into port `peer`'s guest until the queue runs
    /// dry or the burst budget is spent (done), or the guest's next chain cannot
    /// take a frame this way (not done: the caller goes on the usual way).
    /// Returns the frames taken off the TAP, dropped ones included.
    @inlinable
    func receiveDirect(_ source: WorkerSource, peer: Int, now: inout UInt64) -> (reads: Int, done: Bool) {
        let destination = ports[peer]
        guard let reader = source.port.directReader(queue: source.queue),
              let guest = destination.port.guestReceiveRing(destination.transmitQueue) else { return (0, false) }
        let rxq = guest.ring
        // A stopped queue is counted by push; a legacy 10-byte header is left to it too.
        guard rxq.isRunning, rxq.headerLength == PacketBatch.headerSize, let memory = rxq.memoryTable else {
            return (0, false)
        }
        // A frame the guest could not take as the kernel hands it (a partial
        // checksum, a super-frame) must be adapted on the usual path.
        guard reader.deliveredOffloads.isSubset(of: guest.offloadAcceptance) else { return (0, false) }
        // Migrating: the kernel's writes into the chains mark their pages (chosen once per burst).
        var burst = DirectReceive(worker: self, source: source, peer: peer, reader: reader, guest: guest,
                                  memory: memory, now: now)
        let outcome = burst.run(log: rxq.dirtyPageLog, memory: memory)
        now = burst.now
        return outcome
    }

    @inlinable
    func receiveDirect<W: GuestWrites>(_ source: WorkerSource, peer: Int, reader: DirectReader, guest: GuestReceiveRing,
                                       memory: GuestMemory, now: inout UInt64, writes: W) -> (reads: Int, done: Bool) {
        let rxq = guest.ring
        let ingress = source.index
        let me = ports[Int(ingress)]
        let counters = reader.counters
        let prefix = directPrefix
        let prefixLength = Self.directPrefixLength
        // One byte more than the longest frame needs: a read that fills the
        // chain was cut by tun, never a whole frame.
        let want = PacketBatch.headerSize &+ reader.maxFrameLength &+ 1
        var reads = 0
        var frames = 0
        var frameBytes: UInt64 = 0
        var sent = 0
        var sentBytes: UInt64 = 0
        var done = true
        reading: while reads < batchSize {
            let head: UInt16
            let pieces: Int
            let capacity: Int
            switch rxq.nextChain(into: chainPieces, capacity: Self.directPieces, want: want, memory: memory) {
            case .chain(let h, let n, let bytes):
                head = h
                pieces = n
                capacity = bytes
            case .none, .unsuitable, .broken:
                done = false
                break reading
            }
            // SAFETY: pieces <= directPieces (nextChain's capacity), so k < directPieces indexes
            // chainPieces, and vectors <= 1 + pieces stays inside directVectors (directPieces + 1
            // entries).
            directVectors[0] = iovec(iov_base: prefix, iov_len: prefixLength)
            var vectors = 1
            var skip = prefixLength
            var k = 0
            while k < pieces {
                let piece = chainPieces[k]
                if skip >= piece.iov_len {
                    skip &-= piece.iov_len
                } else {
                    // SAFETY: skip < iov_len, so the pointer stays inside the translated piece.
                    directVectors[vectors] = iovec(iov_base: piece.iov_base.unsafelyUnwrapped + skip,
                                                   iov_len: piece.iov_len &- skip)
                    skip = 0
                    vectors &+= 1
                }
                k &+= 1
            }
            guard let total = reader.read(directVectors, count: vectors) else { break reading }
            reads &+= 1
            if total >= capacity {
                counters.dropped(.rxBufferTooSmall)
                continue
            }
            let length = total &- PacketBatch.headerSize
            if length < Ethernet.headerSize {
                counters.dropped(.runt)
                continue
            }
            frames &+= 1
            frameBytes &+= UInt64(length)
            if now == 0 { now = MonotonicClock.seconds() }
            var vlan: UInt16 = 0
            var endpoint: UInt16 = 0
            // SAFETY: the prefix buffer holds 32 bytes and readv filled directPrefixLength = 12 + 14 of
            // them (length >= Ethernet.headerSize was tested above): the Ethernet header after the
            // virtio-net header is there.
            let goesTo = classify(header: prefix + PacketBatch.headerSize, length: length, ingress: ingress, port: me,
                                  counters: counters, now: now, vlan: &vlan, to: &endpoint)
            // Dropped (and counted) by classify: the chain stays for the next frame.
            if goesTo.port != peer && !(goesTo.isFlood && forwarder.contains(PortIndex(truncating: peer), vlan: goesTo.vlan)) { continue }
            rxq.commitChain(head: head, pieces: chainPieces, count: pieces, length: total, prefix: prefix,
                            prefixLength: prefixLength, writes: writes)
            sent &+= 1
            sentBytes &+= UInt64(length)
        }
        guest.finish(sent: sent, bytes: sentBytes)
        if frames > 0 { counters.received(packets: frames, bytes: frameBytes) }
        return (reads, done)
    }
}

/// One direct read burst into a guest, run with the writes its dirty log calls for.
@usableFromInline
struct DirectReceive: GuestWritingBurst {
    @usableFromInline let worker: Worker
    @usableFromInline let source: WorkerSource
    @usableFromInline let peer: Int
    @usableFromInline let reader: DirectReader
    @usableFromInline let guest: GuestReceiveRing
    @usableFromInline let memory: GuestMemory
    /// The burst's clock, read at its first frame; handed back to the caller.
    @usableFromInline var now: UInt64

    @inlinable
    init(worker: Worker, source: WorkerSource, peer: Int, reader: DirectReader, guest: GuestReceiveRing,
         memory: GuestMemory, now: UInt64) {
        self.worker = worker
        self.source = source
        self.peer = peer
        self.reader = reader
        self.guest = guest
        self.memory = memory
        self.now = now
    }

    @inlinable
    mutating func write<W: GuestWrites>(with writes: W) -> (reads: Int, done: Bool) {
        worker.receiveDirect(source, peer: peer, reader: reader, guest: guest, memory: memory, now: &now,
                             writes: writes)
    }
}
