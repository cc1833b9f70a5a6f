import Glibc
import Model
import Packets
import Platform
import Synchronization

/// A TAP interface as a port: frames the kernel sends on the interface are
/// pulled, frames pushed reach the kernel as if the interface had received
/// them. Each frame travels with its 12-byte virtio-net header, which tun reads
/// and writes itself, so checksum and GSO metadata pass between the kernel and
/// the guests unchanged.
///
/// tun moves one frame per read or write, so a burst costs one `readv` per
/// frame, and one write per frame unless the queue has an io_uring: then a
/// burst's writes go to the kernel together with one `io_uring_enter`
/// (`WritePath`); a burst of one frame is written with `write` either way.
/// A frame of up to `stagedFrameLimit` bytes is first copied, header and
/// bytes end to end, into the queue's staging area and written as one buffer
/// (`stage`); a longer one is written from its iovecs.
/// Pulled frames land in the port's own receive buffers,
/// one per batch slot and queue, valid until the next pull on that queue.
/// As with every port, one thread at a time pulls a queue and one pushes it.
/// A worker whose TAP frames can only go to one guest reads them straight
/// into that guest's buffers instead (`readFrame`, TapPort+Direct.swift).
public final class TapPort {
    /// How pushed frames reach the kernel, for the control plane to report.
    public enum WritePath: String, Sendable {
        /// One io_uring entry per frame (WRITE for a staged frame, WRITEV for
        /// a longer one), one `io_uring_enter` per burst: the per-call entry,
        /// exit and file checks are paid once per burst. That was +40 % frames
        /// per CPU second at 64 bytes against `writev` when syscalls cost more;
        /// on session 7's kernel the two were level and staging is what gained
        /// (docs/PERFORMANCE.md, "W4tx in session 7"). A burst of one frame
        /// shares the enter with nothing, and its `write` costs less: it goes
        /// that way (docs/PERFORMANCE.md, a ping through two TAPs).
        case ioUring = "io_uring"
        /// One `write` (a staged frame) or `writev` per frame: where io_uring is missing or disabled.
        case writev
    }

    /// Room for the largest frame Ferry forwards (9000-byte MTU, the Ethernet
    /// header, one 802.1Q tag: 9018 bytes), rounded up. tun cuts a longer frame
    /// to the buffer and reports only what it copied, so a read that fills the
    /// buffer is taken for a longer frame.
    public static let bufferSize = 9216
    /// Room for the largest GSO frame the kernel hands over with TSO/USO on:
    /// an IP datagram of up to 65535 bytes, the Ethernet header and a tag tun
    /// puts back in, rounded up.
    public static let gsoBufferSize = 65536 &+ 64
    /// Each queue's receive area: frames are read back to back into it, each
    /// read offered room for the longest frame the kernel may hand over now.
    public static func receiveAreaSize(batchCapacity: Int) -> Int { max(batchCapacity &* bufferSize, 16 &* gsoBufferSize) }
    /// Frames start at this alignment in the receive area.
    @usableFromInline static let frameAlignment = 64
    /// What the kernel may hand a TAP port when nothing turns it off: partial
    /// checksums and TCP/UDP super-frames, which the worker passes on to
    /// destinations that take them and segments for the others.
    public static let fullOffloads: TapOffloads = [.checksum, .tso4, .tso6, .tsoECN, .uso4, .uso6]
    /// Segments a pushed frame may have; `writev` takes one more, for the header.
    public static let maxSegments = 64
    /// The longest write (virtio-net header and frame) copied into the staging area
    /// before it goes to the kernel: tun takes one buffer with less work than the
    /// same bytes as iovecs (no iovec array to copy in and walk, one copy of the
    /// header and the frame instead of one per piece); 64-byte frames went ~15 %
    /// further per CPU second, MTU-sized ones level (docs/PERFORMANCE.md, "W4tx in
    /// session 7"). Longer frames (jumbo, GSO) are written from their iovecs:
    /// copying them costs more than the iovecs do. A multiple of `frameAlignment`.
    public static let stagedFrameLimit = 2048
    /// The MTUs the receive buffers are sized for.
    public static let mtus = PortLimits.tapMTUs
    /// A frame shorter than its Ethernet header is not a frame. The kernel's
    /// packet layer already refuses to send one on a TAP; the check keeps a
    /// short read, whatever its cause, from reaching a destination.

    public let device: TapDevice
    /// What the port's spec allows the kernel to hand over (`offloads=`).
    public let offloadLevel: PortSpec.Offloads
    public let queueCount: Int
    /// Receive buffers per queue: at most this many frames per pull.
    public let batchCapacity: Int
    public let counters: [QueueCounters]

    /// Each queue's receive area (`receiveAreaSize`), queue after queue.
    @usableFromInline let receiveBuffers: UnsafeMutableRawPointer
    @usableFromInline let receiveAreaSize: Int
    /// The TUNSETOFFLOAD flags in force, for the data path (written by the control thread).
    @usableFromInline let offloadsValue = Atomic<UInt32>(0)
    /// Per queue, the two iovecs of a read: the batch's header slot, a receive buffer.
    @usableFromInline let readVectors: UnsafeMutablePointer<iovec>
    /// Per queue, the iovecs of a write: the header, then the frame's segments.
    @usableFromInline let writeVectors: UnsafeMutablePointer<iovec>
    /// How this port writes; `.ioUring` only when every queue got a ring.
    public let writePath: WritePath
    /// Per queue, the ring a burst is written through (empty on `.writev`).
    /// A ring whose `io_uring_enter` failed is dropped for `writev` for good.
    @usableFromInline let writeRings: [IOUring]
    @usableFromInline let ringFailed: UnsafeMutablePointer<Bool>
    /// Per queue, `batchCapacity` frames' iovecs (header, then up to
    /// `maxSegments` segments), which must stay valid until the burst completes.
    @usableFromInline let burstVectors: UnsafeMutablePointer<iovec>
    /// Per queue, `stagingAreaSize` bytes where frames are laid out whole (`stage`):
    /// a burst's staged frames back to back until it completes (io_uring), or one
    /// frame at a time at its start (`write`).
    @usableFromInline let staging: UnsafeMutableRawPointer
    @usableFromInline let stagingAreaSize: Int
    @usableFromInline let lastErrorCode = Atomic<Int32>(0)
    /// The longest frame the kernel may hand this port now: the MTU plus the
    /// Ethernet header (TapPort+Direct.swift). Written by the control thread.
    @usableFromInline let maxFrameLengthValue: Atomic<Int>
    /// Frames that landed in the port's own receive buffers (`pull`), as
    /// opposed to straight in a guest's (TapPort+Direct.swift).
    public let bufferedFrames = Atomic<UInt64>(0)

    /// Opens (creating if needed) TAP `name` with `queues` queues and no
    /// offloads; `setOffloads` turns them on once the guests' features are known.
    /// `writePath` `.ioUring` falls back to `.writev` when a ring cannot be set up.
    public init(name: String, queues: Int, mtu: Int?, batchCapacity: Int = 256,
                writePath: WritePath = .ioUring, offloads: PortSpec.Offloads = .on) throws {
        self.offloadLevel = offloads
        precondition(batchCapacity > 0 && batchCapacity <= 4096, "batch capacity \(batchCapacity)")
        if let mtu, !Self.mtus.contains(mtu) {
            throw InvalidArgument("TAP \(name): MTU \(mtu) outside \(Self.mtus.lowerBound)...\(Self.mtus.upperBound) "
                                  + "(receive buffers hold \(Self.bufferSize) bytes)")
        }
        device = try TapDevice(name: name, queues: queues, offloads: [], mtu: mtu)
        // Unreadable (hardly: the interface was just opened): assume the largest
        // frame the receive buffers take, which only makes the direct path rarer.
        maxFrameLengthValue = Atomic((try? device.mtu()).map { $0 &+ Ethernet.headerSize } ?? Self.bufferSize)
        queueCount = device.queueCount
        self.batchCapacity = batchCapacity
        counters = (0..<queueCount).map { _ in QueueCounters() }
        // Pages are touched only when a frame first lands in them, so a queue
        // that carries little costs little memory.
        receiveAreaSize = Self.receiveAreaSize(batchCapacity: batchCapacity)
        receiveBuffers = .allocate(byteCount: queueCount * receiveAreaSize, alignment: 4096)
        // SAFETY: each fill covers exactly the count allocated just before it.
        readVectors = .allocate(capacity: 2 * queueCount)
        readVectors.initialize(repeating: iovec(), count: 2 * queueCount)
        writeVectors = .allocate(capacity: (1 + Self.maxSegments) * queueCount)
        writeVectors.initialize(repeating: iovec(), count: (1 + Self.maxSegments) * queueCount)
        var rings: [IOUring] = []
        if writePath == .ioUring {
            for _ in 0..<queueCount {
                guard let ring = try? IOUring(entries: batchCapacity) else { rings = []; break }
                rings.append(ring)
            }
        }
        writeRings = rings
        self.writePath = rings.isEmpty ? .writev : .ioUring
        ringFailed = .allocate(capacity: queueCount)
        ringFailed.initialize(repeating: false, count: queueCount)
        let vectors = rings.isEmpty ? 0 : queueCount * batchCapacity * (1 + Self.maxSegments)
        burstVectors = .allocate(capacity: vectors)
        burstVectors.initialize(repeating: iovec(), count: vectors)
        // Each staged frame takes at most stagedFrameLimit bytes (a multiple of the alignment),
        // and a burst through the ring stages at most batchCapacity of them. Untouched pages cost
        // nothing: a burst of 64-byte frames uses 128 bytes a frame.
        stagingAreaSize = (rings.isEmpty ? 1 : batchCapacity) * Self.stagedFrameLimit
        staging = .allocate(byteCount: queueCount * stagingAreaSize, alignment: 4096)
    }

    deinit {
        receiveBuffers.deallocate()
        readVectors.deallocate()
        writeVectors.deallocate()
        ringFailed.deallocate()
        burstVectors.deallocate()
        staging.deallocate()
    }

    /// The errno of the last read or write that failed for a reason other than
    /// EAGAIN (0 if none did), for the control plane to log.
    public var lastError: Int32 { lastErrorCode.load(ordering: .relaxed) }

    /// The descriptor of `queue`, readable (POLLIN) when the kernel has a frame for it.
    public func descriptor(queue: Int) -> Int32 { device.queueDescriptors[queue] }

    /// Reads frames until the batch, the receive buffers or the queue runs out;
    /// returns how many reads took a frame off the queue, dropped ones included.
    @inlinable
    public func pull(queue q: Int, into batch: PacketBatch) -> Int {
        var budget = batch.room
        if budget > batch.freeSegments { budget = batch.freeSegments }
        if budget > batchCapacity { budget = batchCapacity }
        // Indexing `counters` checks `q` before anything is written through the pointers.
        let counters = self.counters[q]
        // SAFETY: q < queueCount (indexing `counters` above traps otherwise): the queue's 2 read iovecs
        // lie in readVectors (2 * queueCount) and its area in receiveBuffers (queueCount *
        // receiveAreaSize); the loop keeps used + readSize <= receiveAreaSize, and header(count) is a
        // whole slot while reads < budget <= room.
        let iov = readVectors + 2 &* q
        let area = receiveBuffers + q &* receiveAreaSize
        let readSize = readBufferSize
        var used = 0
        var reads = 0
        var frames = 0
        var bytes: UInt64 = 0
        reading: while reads < budget && used &+ readSize <= receiveAreaSize {
            let header = batch.header(batch.count)
            // A dropped frame leaves its room to the next read.
            let buffer = area + used
            iov[0] = iovec(iov_base: header, iov_len: PacketBatch.headerSize)
            iov[1] = iovec(iov_base: buffer, iov_len: readSize)
            let total: Int
            do throws(SystemError) {
                guard case .done(let n) = try device.readv(queue: q, iov, count: 2) else { break reading }
                total = n
            } catch {
                counters.dropped(.ioError)
                lastErrorCode.store(error.errno, ordering: .relaxed)
                break reading
            }
            reads &+= 1
            let length = total &- PacketBatch.headerSize
            if length < Ethernet.headerSize {
                counters.dropped(.runt)
                continue
            }
            if length >= readSize {
                counters.dropped(.rxBufferTooSmall)
                continue
            }
            // num_buffers is the destination's to fill in. Older kernels write
            // only the 10-byte virtio_net_hdr, which would leave the previous
            // frame's value in the slot.
            header.storeBytes(of: 0, toByteOffset: 10, as: UInt16.self)
            batch.append(base: buffer, length: UInt32(truncatingIfNeeded: length),
                         token: UInt32(truncatingIfNeeded: frames))
            frames &+= 1
            bytes &+= UInt64(length)
            used &+= (length &+ Self.frameAlignment &- 1) & ~(Self.frameAlignment &- 1)
        }
        if frames > 0 {
            counters.received(packets: frames, bytes: bytes)
            bufferedFrames.add(UInt64(frames), ordering: .relaxed)
        }
        return reads
    }

    /// Nothing to give back: the receive buffers are the port's, and the next
    /// pull on the queue reuses them.
    @inlinable public func release(queue _: Int) {}

    /// Writes every frame of `batch`, header first: through the queue's
    /// io_uring when it has one and the burst has two frames or more
    /// (`pushSubmitting`), else one `write` (staged) or `writev` each. EAGAIN
    /// (the TAP's send buffer is full) drops the rest of the burst; any other
    /// error drops only the frame it was returned for.
    @inlinable
    public func push(queue q: Int, from batch: PacketBatch) {
        // Indexing `counters` checks `q` before anything is written through the pointer.
        let counters = self.counters[q]
        // SAFETY: q < queueCount (indexing `counters` above traps otherwise), the length of ringFailed;
        // the queue's 1 + maxSegments write iovecs lie in writeVectors ((1 + maxSegments) *
        // queueCount), its staging area (stagingAreaSize >= stagedFrameLimit) in staging.
        if batch.count > 1 && !writeRings.isEmpty && !ringFailed[q] {
            pushSubmitting(queue: q, from: batch, ring: writeRings[q], counters: counters)
            return
        }
        let iov = writeVectors + q &* (1 &+ Self.maxSegments)
        let area = staging + q &* stagingAreaSize
        let count = batch.count
        var sent = 0
        var bytes: UInt64 = 0
        var frame = 0
        writing: while frame < count {
            let segments = batch.segmentCount(of: frame)
            if segments > Self.maxSegments {
                counters.dropped(.tooManySegments)
                frame &+= 1
                continue
            }
            do throws(SystemError) {
                let result: IOResult<Int>
                if let length = Self.stage(frame, of: batch, segments: segments, into: area) {
                    result = try device.write(queue: q, area, length: length)
                } else {
                    Self.describe(frame, of: batch, segments: segments, into: iov)
                    result = try device.writev(queue: q, iov, count: 1 &+ segments)
                }
                switch result {
                case .done:
                    sent &+= 1
                    bytes &+= UInt64(batch.length(of: frame))
                case .wouldBlock:
                    // Frames leave the send buffer only as the kernel frees them,
                    // not within this burst: the rest would meet the same answer.
                    counters.dropped(.txFull, count &- frame)
                    break writing
                }
            } catch {
                counters.dropped(.ioError)
                lastErrorCode.store(error.errno, ordering: .relaxed)
            }
            frame &+= 1
        }
        if sent > 0 { counters.sent(packets: sent, bytes: bytes) }
    }

    /// `push` through io_uring: up to `batchCapacity` frames (the ring's
    /// capacity at least) per `io_uring_enter`, staged frames as WRITE entries
    /// from the queue's staging area, the others as WRITEV, in the burst's
    /// order (the kernel issues a submission's entries in turn), each frame's result counted on
    /// its own: sent, EAGAIN as `.txFull`, any other errno as `.ioError`. Every
    /// frame is submitted, so one after an EAGAIN may still go if the kernel
    /// freed room meanwhile. A failed `io_uring_enter` (not a frame's error)
    /// counts the burst's unsettled frames as `.ioError` and moves the queue to
    /// `writev`.
    @inlinable
    func pushSubmitting(queue q: Int, from batch: PacketBatch, ring: IOUring, counters: QueueCounters) {
        let stride = 1 &+ Self.maxSegments
        // SAFETY: q < queueCount (push indexed `counters` first), so the queue's batchCapacity * stride
        // iovecs lie in burstVectors (queueCount * batchCapacity * stride, allocated when there are
        // rings, the only case that comes here); ringFailed has queueCount flags.
        let vectors = burstVectors + q &* batchCapacity &* stride
        let area = staging + q &* stagingAreaSize
        let chunk = min(batchCapacity, ring.capacity)
        let fd = device.queueDescriptors[q]
        let count = batch.count
        var sent = 0
        var full = 0
        var failed = 0
        var bytes: UInt64 = 0
        var lastError: Int32 = 0
        var frame = 0
        while frame < count {
            var prepared = 0
            var staged = 0
            while frame < count && prepared < chunk {
                let segments = batch.segmentCount(of: frame)
                if segments > Self.maxSegments {
                    counters.dropped(.tooManySegments)
                    frame &+= 1
                    continue
                }
                // SAFETY: prepared < chunk <= batchCapacity, so the frame's
                // iovecs lie inside this queue's share of `burstVectors`, and the frames staged
                // before it took at most prepared * stagedFrameLimit bytes: a whole
                // stagedFrameLimit is left in the queue's area (batchCapacity * stagedFrameLimit).
                if let length = Self.stage(frame, of: batch, segments: segments, into: area + staged) {
                    ring.prepareWrite(fd: fd, area + staged, length: length, userData: UInt64(frame))
                    staged &+= (length &+ Self.frameAlignment &- 1) & ~(Self.frameAlignment &- 1)
                } else {
                    let iov = vectors + prepared &* stride
                    Self.describe(frame, of: batch, segments: segments, into: iov)
                    ring.prepareWritev(fd: fd, iov, count: 1 &+ segments, userData: UInt64(frame))
                }
                prepared &+= 1
                frame &+= 1
            }
            if prepared == 0 { break }
            do throws(SystemError) {
                try ring.submitAndWait()
            } catch {
                ringFailed[q] = true
                var settled = 0
                ring.reap { _, _ in settled &+= 1 }
                failed &+= prepared &- settled
                lastError = error.errno
                // The rest of the batch goes the writev way on the next push.
                failed &+= count &- frame
                break
            }
            ring.reap { userData, result in
                if result >= 0 {
                    sent &+= 1
                    bytes &+= UInt64(batch.length(of: Int(truncatingIfNeeded: userData)))
                } else if result == -EAGAIN {
                    full &+= 1
                } else {
                    failed &+= 1
                    lastError = -result
                }
            }
        }
        if sent > 0 { counters.sent(packets: sent, bytes: bytes) }
        if full > 0 { counters.dropped(.txFull, full) }
        if failed > 0 {
            counters.dropped(.ioError, failed)
            lastErrorCode.store(lastError, ordering: .relaxed)
        }
    }

    /// The iovecs of one frame's write: its virtio-net header, then its segments
    /// (`segments` of them, at most `maxSegments`, checked by the caller).
    @inlinable
    static func describe(_ frame: Int, of batch: PacketBatch, segments: Int, into iov: UnsafeMutablePointer<iovec>) {
        // SAFETY: the caller gives 1 + maxSegments iovecs at `iov` and checked segments <= maxSegments;
        // the frame's segments come from the batch (its invariant).
        iov[0] = iovec(iov_base: batch.header(frame), iov_len: PacketBatch.headerSize)
        let first = batch.segments(of: frame).lowerBound
        var s = 0
        while s < segments {
            iov[1 &+ s] = iovec(iov_base: batch.segmentBase(first &+ s), iov_len: batch.segmentLength(first &+ s))
            s &+= 1
        }
    }

    /// Copies one frame's virtio-net header and segments end to end to `slot`
    /// (room for `stagedFrameLimit` bytes) and returns the write's length, or nil,
    /// having copied nothing or part, when they take more than that: the caller
    /// writes the frame from its iovecs.
    @inlinable
    static func stage(_ frame: Int, of batch: PacketBatch, segments: Int, into slot: UnsafeMutableRawPointer) -> Int? {
        if batch.length(of: frame) &+ PacketBatch.headerSize > stagedFrameLimit { return nil }
        // SAFETY: each copy is bounded by the check before it against stagedFrameLimit, the room at
        // `slot`; the sources are the batch's header slot and the frame's segments (its invariant).
        slot.copyMemory(from: batch.header(frame), byteCount: PacketBatch.headerSize)
        var offset = PacketBatch.headerSize
        let first = batch.segments(of: frame).lowerBound
        var s = 0
        while s < segments {
            let length = batch.segmentLength(first &+ s)
            if length > stagedFrameLimit &- offset { return nil }
            (slot + offset).copyMemory(from: batch.segmentBase(first &+ s), byteCount: length)
            offset &+= length
            s &+= 1
        }
        return offset
    }

    /// Sets what the kernel may hand this port (TUNSETOFFLOAD), from the control
    /// thread. With TSO/USO on, reads are offered room for a 64 KiB frame.
    public func setOffloads(_ offloads: TapOffloads) throws {
        try device.setOffloads(offloads)
        offloadsValue.store(offloads.rawValue, ordering: .relaxed)
    }

    /// What the kernel may hand this port now, as what a destination must take
    /// for a frame to go to it untouched.
    @inlinable
    public var deliveredOffloads: OffloadAcceptance {
        let flags = TapOffloads(rawValue: offloadsValue.load(ordering: .relaxed))
        var a: OffloadAcceptance = []
        if flags.contains(.checksum) { a.insert(.partialChecksum) }
        if flags.contains(.tso4) { a.insert(.tcp4) }
        if flags.contains(.tso6) { a.insert(.tcp6) }
        if flags.contains(.tsoECN) { a.insert(.ecn) }
        if !flags.isDisjoint(with: Self.uso) { a.insert(.udp) }
        return a
    }

    @usableFromInline static let uso: TapOffloads = [.uso4, .uso6]
    /// The offloads that bring frames longer than the MTU.
    @usableFromInline static let segmentation: TapOffloads = [.tso4, .tso6, .uso4, .uso6]

    /// Room each read is offered: a GSO frame's with segmentation on, an MTU-sized frame's otherwise.
    @inlinable
    var readBufferSize: Int {
        TapOffloads(rawValue: offloadsValue.load(ordering: .relaxed)).isDisjoint(with: Self.segmentation)
            ? Self.bufferSize : Self.gsoBufferSize
    }
}
