import CFerry
import Glibc
import Logging
import Model
import Packets
import Platform
import Synchronization
import XDP

/// A NIC reached through AF_XDP: one socket per NIC queue, all on one UMEM.
///
/// The UMEM is the port's packet pool, a memfd cut into `frameSize` frames.
/// Each queue owns a share of it: `receiveFrames` frames that circulate
/// between the fill ring, the RX ring and Ferry, and `ringSize` frames for
/// transmitting, which circulate between a free list, the TX ring and the
/// completion ring. No frame is ever shared between queues, so a queue is
/// served without a lock by the one worker that pulls it (and the one that
/// pushes it).
///
/// A frame from the NIC is handed to its destination by reference into the
/// UMEM (the destination's copy is the only one Ferry makes), and goes back to
/// the fill ring on `release`. A frame to the NIC is copied once, from
/// wherever it lives into a free UMEM frame, its partial checksum finished on
/// the way (the wire has no checksum offload), and its descriptor put on the
/// TX ring.
///
/// Which frames reach these sockets is the steering program's business (the
/// XDP target): the port attaches it before binding the sockets and enters
/// each socket into the program's socket map once bound, so a queue's frames
/// pass to the kernel until Ferry can take them. The program's guest map is
/// filled by the control plane (Engine's UplinkSteering).
public final class XdpPort {
    public typealias ZeroCopyRequest = XDPZeroCopyRequest

    /// UMEM frame size: a page holds two. Copy mode puts a received frame 256
    /// bytes (XDP_PACKET_HEADROOM) into its chunk, so the longest frame the
    /// NIC can hand over is 1792 bytes: Ethernet MTU 1500 with room to spare.
    public static let frameSize: UInt32 = 2048
    /// RX, TX and completion ring entries per queue.
    public static let ringSize: UInt32 = 2048
    /// Frames each queue keeps for receiving: all of them fit in the fill ring.
    public static let receiveFrames: UInt32 = 4096
    /// The queue ids one port may bind (the steering program's socket map size).
    public static let maxQueues = PortLimits.xdpQueues

    public let interface: String
    public let interfaceIndex: UInt32
    public let queueCount: Int
    /// The steering program on the interface; detached when the port closes.
    public let steering: SteeringProgram
    /// What the program passes to the kernel that Ferry also needs, pulled
    /// with queue 0.
    public let copies: XdpCopySocket
    public let copyMode: XDPSocket.CopyMode
    /// Why zero-copy was not used when `zerocopy=auto` asked for it (nil when it was, or was not asked for).
    public let zeroCopyFallback: String?
    public let counters: [QueueCounters]
    /// The longest untagged frame this port sends: the interface's MTU plus
    /// an Ethernet header (a tagged one may be 4 bytes longer).
    public let maxFrameLength: Int

    let umem: SharedMemory
    @usableFromInline let sockets: [XDPSocket]
    @usableFromInline let umemBase: UnsafeMutableRawPointer
    @usableFromInline let queues: UnsafeMutablePointer<XdpQueue>
    @usableFromInline let batchCapacity: Int
    @usableFromInline let lastErrorCode = Atomic<Int32>(0)
    /// Per queue: the last pull's VXLAN datagrams for a tunnel this uplink carries
    /// (`steerTunnel`), whole Ethernet frames by reference into the UMEM, kept out
    /// of the switched batch; released with it. Empty while no tunnel is steered.
    @usableFromInline let tunnelBatches: [PacketBatch]
    /// The interface's MAC in memory order (first byte lowest), once a tunnel is
    /// steered: the program sends Ferry no other frames addressed to it.
    @usableFromInline let tunnelMAC = Atomic<UInt64>(0)
    @usableFromInline let steersTunnels = Atomic<Bool>(false)

    /// Attaches the steering program to `interface` (`attach`: native, or
    /// generic when native fails or is asked for) and binds `queues` sockets
    /// (nil: one per receive queue the interface has) in zero-copy or copy mode
    /// as `zeroCopy` asks; `guestCapacity` sizes the program's address map.
    public convenience init(interface: String, queues: Int?, attach: XDPAttachRequest, zeroCopy: ZeroCopyRequest,
                guestCapacity: Int, batchCapacity: Int = 256, logger: Logger) throws(XdpPortError) {
        precondition(batchCapacity > 0 && batchCapacity <= Int(Self.ringSize))
        let index: UInt32
        do { index = try NetworkInterface.index(of: interface) } catch { throw .opening(error) }
        let count = queues ?? min(NetworkInterface.receiveQueueCount(of: interface), Self.maxQueues)
        guard (1...Self.maxQueues).contains(count) else {
            throw .invalid("\(interface): \(count) queues (a port binds 1...\(Self.maxQueues))")
        }
        if zeroCopy == .on && attach == .generic {
            throw .invalid("\(interface): zerocopy=on needs the steering program in native mode, not mode=generic")
        }
        let program: SteeringProgram
        do {
            program = try SteeringProgram.attach(interface: interface, mode: attach, guestCapacity: guestCapacity, logger: logger)
        } catch {
            throw .steering(error)
        }
        let forceCopy = program.attachedMode == .generic
        if zeroCopy == .on && forceCopy {
            throw .invalid("\(interface): zerocopy=on needs native XDP, and the driver took the program only in generic mode")
        }
        do {
            let copies = try XdpCopySocket(interface: interface)
            try self.init(interface: interface, index: index, queues: count, zeroCopy: zeroCopy, forceCopy: forceCopy,
                          program: program, copies: copies, batchCapacity: batchCapacity)
        } catch {
            throw .opening(error)
        }
        for q in 0..<count {
            do { try program.setSocket(queue: UInt32(q), fd: descriptor(queue: q)) } catch { throw .steering(error) }
        }
        if let why = zeroCopyFallback {
            logger.info("xdp \(interface): zero-copy not available (\(why)); the kernel copies frames (copy mode)")
        }
    }

    private init(interface: String, index: UInt32, queues count: Int, zeroCopy: ZeroCopyRequest, forceCopy: Bool,
                 program: SteeringProgram, copies: XdpCopySocket, batchCapacity: Int) throws(SystemError) {
        steering = program
        self.copies = copies
        let perQueue = Int(Self.receiveFrames + Self.ringSize) * Int(Self.frameSize)
        umem = try SharedMemory(length: perQueue * count, name: "ferry-umem-\(interface)")
        umemBase = umem.base
        LockedMemoryLimit.raiseToHardLimit()

        var sockets: [XDPSocket] = []
        var mode: XDPSocket.CopyMode = (zeroCopy == .off || forceCopy) ? .copy : .zeroCopy
        var fallback: String?
        for q in 0..<count {
            let shared: XDPSocket.UMEM = sockets.first.map { .share($0) }
                ?? .register(area: umem.base, length: umem.length, frameSize: Self.frameSize)
            do {
                sockets.append(try XDPSocket(interfaceIndex: index, queue: UInt32(q), umem: shared, copyMode: mode,
                                             ringSize: Self.ringSize, fillRingSize: Self.receiveFrames))
            } catch where error.call.hasPrefix("setsockopt(XDP_UMEM_REG)") && error.errno == ENOBUFS {
                // The kernel pins the UMEM and charges it to RLIMIT_MEMLOCK.
                throw SystemError("\(interface): registering the \(umem.length / 1024) KiB UMEM needs that much locked "
                                  + "memory; RLIMIT_MEMLOCK is \(LockedMemoryLimit.describe(LockedMemoryLimit.current)). "
                                  + "Raise it (ulimit -l, LimitMEMLOCK= in a systemd unit) or give Ferry CAP_IPC_LOCK",
                                  errno: ENOBUFS)
            } catch where q == 0 && mode == .zeroCopy && zeroCopy == .auto {
                // The driver cannot map the UMEM for DMA (veth never can): the
                // kernel copies instead. Every queue of a port shares one mode.
                fallback = "\(error)"
                mode = .copy
                sockets.append(try XDPSocket(interfaceIndex: index, queue: UInt32(q), umem: shared, copyMode: mode,
                                             ringSize: Self.ringSize, fillRingSize: Self.receiveFrames))
            }
        }
        self.sockets = sockets
        self.interface = interface
        interfaceIndex = index
        queueCount = count
        copyMode = mode
        zeroCopyFallback = fallback
        self.batchCapacity = batchCapacity
        counters = (0..<count).map { _ in QueueCounters() }
        tunnelBatches = (0..<count).map { _ in PacketBatch(capacity: batchCapacity) }
        let mtu = (try? NetworkInterface.mtu(of: interface)) ?? 1500
        maxFrameLength = min(mtu &+ Ethernet.headerSize, Int(Self.frameSize))

        self.queues = .allocate(capacity: count)
        for q in 0..<count {
            let s = sockets[q]
            let base = UInt64(q) * UInt64(perQueue)
            var state = XdpQueue(socket: s, batchCapacity: batchCapacity)
            // Every receive frame starts in the fill ring: the kernel may land a
            // frame in any of them from now on.
            for i in 0..<Self.receiveFrames {
                state.fill.address(at: state.fill.writePosition &+ i).pointee = base + UInt64(i) * UInt64(Self.frameSize)
            }
            state.fill.produce(Self.receiveFrames)
            let transmitBase = base + UInt64(Self.receiveFrames) * UInt64(Self.frameSize)
            for i in 0..<Int(Self.ringSize) {
                state.transmitFree[i] = transmitBase + UInt64(i) * UInt64(Self.frameSize)
            }
            state.transmitFreeCount = Int(Self.ringSize)
            // SAFETY: q < count, the number of queue states just allocated; each is initialized once.
            (self.queues + q).initialize(to: state)
        }
    }

    /// Detaches the steering program; the sockets close with the port.
    public func close() { steering.detach() }

    deinit {
        // SAFETY: q < queueCount: init initialized every one of the queueCount states.
        for q in 0..<queueCount { queues[q].deallocate() }
        queues.deinitialize(count: queueCount)
        queues.deallocate()
    }

    /// The socket descriptor of `queue`: readable when its RX ring holds frames;
    /// the steering program's socket map takes it.
    public func descriptor(queue: Int) -> Int32 { sockets[queue].descriptor.rawValue }

    /// The errno of the last failed kick or copy-socket error (the interface
    /// went down or away), 0 if none.
    public var lastError: Int32 {
        let own = lastErrorCode.load(ordering: .relaxed)
        return own != 0 ? own : copies.lastError
    }

    /// Has the steering program redirect UDP datagrams to `local`:`udpPort` (a
    /// vxlan port sending through this uplink) to Ferry; they come out of `pull`
    /// apart, in `tunnelFrames`. Control thread.
    public func steerTunnel(local: InternetAddress, udpPort: UInt16) throws {
        let b = try NetworkInterface.hardwareAddress(of: interface).bytes
        let memoryOrder = UInt64(b.0) | UInt64(b.1) << 8 | UInt64(b.2) << 16 | UInt64(b.3) << 24
            | UInt64(b.4) << 32 | UInt64(b.5) << 40
        tunnelMAC.store(memoryOrder, ordering: .relaxed)
        steersTunnels.store(true, ordering: .releasing)
        try steering.addTunnel(local, port: udpPort)
    }

    /// The VXLAN datagrams of the last pull of `queue` (whole Ethernet frames), nil if none.
    @inlinable
    public func tunnelFrames(queue q: Int) -> PacketBatch? {
        let frames = tunnelBatches[q]
        return frames.count > 0 ? frames : nil
    }

    /// The kernel's own drop counters for `queue` (XDP_STATISTICS).
    public func kernelStatistics(queue: Int) -> xdp_statistics? { try? sockets[queue].statistics() }

    // MARK: receive

    /// Takes what the queue's RX ring holds, up to the batch's room; the frames
    /// stay in the UMEM until `release`. Returns the frames taken, runts included.
    @inlinable
    public func pull(queue q: Int, into batch: PacketBatch) -> Int {
        // SAFETY: q < queueCount (the port's queues; the engine polls no other); i < n <=
        // batchCapacity, the length of `taken`; the RX descriptor is the kernel's (16 bytes, masked by
        // the ring), and its address is an offset the kernel gave inside one frame of the UMEM it
        // registered (length <= frameSize).
        let counters = self.counters[q]
        let state = queues + q
        let rx = state.pointee.rx
        let tunnelFrames = tunnelBatches[q]
        tunnelFrames.reset()
        let tunnels = steersTunnels.load(ordering: .acquiring)
        let tunnelMAC = tunnels ? self.tunnelMAC.load(ordering: .relaxed) : 0
        var n = Int(rx.readable())
        if n == 0 {
            if state.pointee.fill.needsWakeup { try? sockets[q].kickReceive() }
            return q == 0 ? copies.pull(into: batch) : 0
        }
        var room = batch.room
        if room > batch.freeSegments { room = batch.freeSegments }
        if room > batchCapacity { room = batchCapacity }
        if n > room { n = room }
        let position = rx.readPosition
        let taken = state.pointee.taken
        var frames = 0
        var bytes: UInt64 = 0
        var i = 0
        while i < n {
            let descriptor = rx.descriptor(at: position &+ UInt32(truncatingIfNeeded: i))
            let address = descriptor.load(as: UInt64.self)
            let length = descriptor.load(fromByteOffset: 8, as: UInt32.self)
            taken[i] = address
            let token = UInt32(truncatingIfNeeded: i)
            i &+= 1
            if length < UInt32(Ethernet.headerSize) {
                counters.dropped(.runt)
                continue
            }
            let frameStart = umemBase + Int(truncatingIfNeeded: address)
            // The program sends Ferry frames to the interface's own MAC only for a steered tunnel
            // (the frame holds an Ethernet header: checked above).
            let destination = UInt64(frameStart.loadUnaligned(as: UInt32.self))
                | UInt64(frameStart.loadUnaligned(fromByteOffset: 4, as: UInt16.self)) << 32
            let into = tunnels && destination == tunnelMAC ? tunnelFrames : batch
            let slot = into.count
            into.append(base: frameStart, length: length, token: token)
            // The wire carries no virtio-net header: no offload flags, no GSO.
            into.clearHeader(slot)
            frames &+= 1
            bytes &+= UInt64(length)
        }
        rx.consume(UInt32(truncatingIfNeeded: n))
        state.pointee.takenCount = n
        if frames > 0 { counters.received(packets: frames, bytes: bytes) }
        if q == 0 && !batch.isFull { return n &+ copies.pull(into: batch) }
        return n
    }

    /// Gives the last pull's frames back to the kernel through the fill ring.
    @inlinable
    public func release(queue q: Int) {
        // SAFETY: q < queueCount; i < takenCount <= batchCapacity, the length of `taken`; the fill ring
        // has room for every frame it lent (see below), masked to its size by `address(at:)`.
        if q == 0 { copies.release() }
        let state = queues + q
        let count = state.pointee.takenCount
        if count == 0 { return }
        let fill = state.pointee.fill
        let taken = state.pointee.taken
        let mask = ~UInt64(Self.frameSize &- 1)
        let position = fill.writePosition
        // The fill ring holds every receive frame of the queue, so there is
        // always room for the ones that come back.
        var i = 0
        while i < count {
            fill.address(at: position &+ UInt32(truncatingIfNeeded: i)).pointee = taken[i] & mask
            i &+= 1
        }
        fill.produce(UInt32(truncatingIfNeeded: count))
        state.pointee.takenCount = 0
    }

    // MARK: transmit

    /// Copies every frame of `batch` into a free UMEM frame and onto the TX
    /// ring, then asks the kernel to send. Frames longer than the port's MTU
    /// allows are dropped `.tooLong`; with no free frame or TX slot left the
    /// rest of the burst is dropped `.txFull`. With a `segmenter`, each GSO
    /// frame (AF_XDP takes none) is cut straight into UMEM frames, one per
    /// segment, every checksum computed (XdpPort+Segments.swift); its drops are
    /// counted per segment, so it is tried even when the ring is full.
    @inlinable
    public func push(queue q: Int, from batch: PacketBatch, segmenter: SoftwareSegmenter? = nil) {
        // SAFETY: q < queueCount; freeCount - 1 indexes `transmitFree` (ringSize entries): room <=
        // freeCount at the start and freeCount falls by one exactly when queued rises, so while queued
        // < room it is >= 1; `address` is a free UMEM frame's offset, and gather writes at most
        // frameSize bytes there.
        let counters = self.counters[q]
        let state = queues + q
        reclaimCompletions(state)
        let tx = state.pointee.tx
        var room = Int(tx.writable())
        if room > state.pointee.transmitFreeCount { room = state.pointee.transmitFreeCount }
        let free = state.pointee.transmitFree
        var freeCount = state.pointee.transmitFreeCount
        let position = tx.writePosition
        let count = batch.count
        var queued = 0
        var bytes: UInt64 = 0
        var frame = 0
        while frame < count {
            if let segmenter, VirtioNetHeader.gsoType(at: batch.header(frame)) != VirtioNetHeader.gsoNone {
                var sink = UMEMSegmentSink(umemBase: umemBase, free: free, freeCount: freeCount, tx: tx,
                                           position: position, queued: queued, room: room,
                                           frameSize: Int(Self.frameSize))
                segmenter.transmit(batch.frameSegments(frame), header: batch.header(frame), checksum: .complete,
                                   untaggedLimit: maxFrameLength, into: &sink, counters: counters)
                freeCount = sink.freeCount
                queued = sink.queued
                bytes &+= sink.bytes
                frame &+= 1
                continue
            }
            if queued == room {
                if segmenter == nil {
                    counters.dropped(.txFull, count &- frame)
                    break
                }
                counters.dropped(.txFull)
                frame &+= 1
                continue
            }
            let address = free[freeCount &- 1]
            let destination = umemBase + Int(truncatingIfNeeded: address)
            if let reason = batch.gather(frame, into: destination, limit: Int(Self.frameSize), untaggedLimit: maxFrameLength) {
                counters.dropped(reason)
                frame &+= 1
                continue
            }
            freeCount &-= 1
            let length = batch.length(of: frame)
            Self.describe(tx, at: position &+ UInt32(truncatingIfNeeded: queued), address: address, length: length)
            queued &+= 1
            bytes &+= UInt64(length)
            frame &+= 1
        }
        state.pointee.transmitFreeCount = freeCount
        if queued > 0 {
            tx.produce(UInt32(truncatingIfNeeded: queued))
            counters.sent(packets: queued, bytes: bytes)
        }
        kickTransmit(queue: q, state)
    }

    /// Fills TX ring entry `slot` (struct xdp_desc): the UMEM frame at
    /// `address` holds a frame of `length` bytes, no options.
    @inlinable
    static func describe(_ tx: XDPRing, at slot: UInt32, address: UInt64, length: Int) {
        // SAFETY: `descriptor(at:)` masks the slot into the TX ring's 16-byte descriptors; offsets
        // 0..15 are inside one.
        let descriptor = tx.descriptor(at: slot)
        descriptor.storeBytes(of: address, as: UInt64.self)
        descriptor.storeBytes(of: UInt32(truncatingIfNeeded: length), toByteOffset: 8, as: UInt32.self)
        descriptor.storeBytes(of: 0, toByteOffset: 12, as: UInt32.self)
    }

    /// Frames the kernel has sent go back on the free list.
    @inlinable
    func reclaimCompletions(_ state: UnsafeMutablePointer<XdpQueue>) {
        // SAFETY: `state` is one of queueCount states (callers index it by a valid queue); each
        // completed address is a frame taken from the free list, so freeCount + n never passes
        // ringSize, the list's length.
        let completion = state.pointee.completion
        let n = completion.readable()
        if n == 0 { return }
        let free = state.pointee.transmitFree
        var freeCount = state.pointee.transmitFreeCount
        let position = completion.readPosition
        var i: UInt32 = 0
        while i < n {
            free[freeCount] = completion.address(at: position &+ i).pointee
            freeCount &+= 1
            i &+= 1
        }
        completion.consume(n)
        state.pointee.transmitFreeCount = freeCount
    }

    /// In copy mode the kernel transmits only inside `sendto`, a few dozen
    /// frames per call; a zero-copy driver needs the call only when it asks
    /// (need_wakeup). Repeats while the ring drains, and stops at the first
    /// call that moves nothing: the frames left go with the next burst's kick.
    @inlinable
    func kickTransmit(queue q: Int, _ state: UnsafeMutablePointer<XdpQueue>) {
        // SAFETY: `state` is the queue's own state (push passes queues + q with q < queueCount).
        let tx = state.pointee.tx
        var pending = tx.pending()
        if pending == 0 { return }
        if copyMode == .zeroCopy && !tx.needsWakeup { return }
        let socket = sockets[q]
        while pending > 0 {
            do throws(SystemError) {
                _ = try socket.kickTransmit()
            } catch {
                lastErrorCode.store(error.errno, ordering: .relaxed)
                return
            }
            let left = tx.pending()
            if left >= pending { return }
            pending = left
        }
    }
}

/// Why an xdp port could not be opened.
public enum XdpPortError: Error, CustomStringConvertible {
    case invalid(String)
    case system(SystemError)
    case steering(XDPError)

    public var description: String {
        switch self {
        case .invalid(let why): why
        case .system(let e): "\(e)"
        case .steering(let e): "\(e)"
        }
    }

    /// What opening the interface or the copy socket threw: a failed call, or a refused argument.
    static func opening(_ error: any Error) -> XdpPortError {
        switch error {
        case let error as SystemError: .system(error)
        case let error as InvalidArgument: .invalid(error.description)
        default: .invalid("\(error)")
        }
    }
}

/// One queue's rings and frame bookkeeping, kept in a plain struct so the data
/// path reaches it through one pointer, with no reference counting.
@usableFromInline
struct XdpQueue {
    @usableFromInline let rx: XDPRing
    @usableFromInline let tx: XDPRing
    @usableFromInline let fill: XDPRing
    @usableFromInline let completion: XDPRing
    /// UMEM addresses of the frames the last pull took, to return on `release`.
    @usableFromInline let taken: UnsafeMutablePointer<UInt64>
    @usableFromInline var takenCount = 0
    /// UMEM addresses of transmit frames the kernel is done with.
    @usableFromInline let transmitFree: UnsafeMutablePointer<UInt64>
    @usableFromInline var transmitFreeCount = 0

    init(socket: XDPSocket, batchCapacity: Int) {
        rx = socket.rx
        tx = socket.tx
        fill = socket.fill
        completion = socket.completion
        taken = .allocate(capacity: batchCapacity)
        transmitFree = .allocate(capacity: Int(XdpPort.ringSize))
    }

    func deallocate() {
        taken.deallocate()
        transmitFree.deallocate()
    }
}
