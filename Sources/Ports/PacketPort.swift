import Glibc
import Model
import Packets
import Platform
import Synchronization

/// An existing interface (a NIC, a veth) reached through AF_PACKET sockets
/// with mapped rings: the uplink where XDP is missing or unusable. Frames the
/// interface receives are pulled, frames pushed go out on it.
///
/// One `PacketRingSocket` per queue, each with a TPACKET_V3 receive ring and
/// a transmit ring; with several queues the sockets form a fanout group in
/// hash mode, so the kernel spreads flows over them and hands each frame to
/// exactly one. Pulled frames are not copied: the batch points into the
/// receive ring, and `release` gives the ring blocks back once their frames
/// were copied on. Pushed frames are copied once, into transmit slots, and a
/// burst goes to the kernel with one `sendto`, past the qdisc layer. The
/// interface is promiscuous while the port is open (the kernel undoes it when
/// the sockets close, a crash included).
///
/// Frames travel with their virtio-net header both ways (PACKET_VNET_HDR):
/// the kernel hands over GRO'd super-frames and partial checksums from the
/// host's own stack with the header that says so (without it a partial
/// checksum would arrive looking like a bad one), and takes partial checksums
/// and GSO super-frames to send, finishing or segmenting them itself or in the
/// driver. `offloads` says what the port hands the kernel: everything (`on`),
/// partial checksums only (`csum`: the worker segments super-frames first), or
/// nothing (`off`: the worker segments, and the port finishes each partial
/// checksum in its slot, `ChecksumCompletion`). What the kernel hands over is
/// the interface's business (its GRO, `ethtool -K`) and arrives whatever
/// `offloads` says. As with every port, one thread at a time pulls a queue and
/// one pushes it.
public final class PacketPort {
    /// Queues one port may have: sockets in one fanout group.
    public static let maxQueues = PortLimits.packetQueues

    public let interface: String
    public let queueCount: Int
    public let sockets: [PacketRingSocket]
    public let counters: [QueueCounters]
    public let receiveRing: PacketRingSocket.ReceiveRing
    public let transmitRing: PacketRingSocket.TransmitRing
    /// What the port's spec allows the kernel to be handed (`offloads=`).
    public let offloadLevel: PortSpec.Offloads
    @usableFromInline let lastErrorCode = Atomic<Int32>(0)
    /// The longest untagged frame the interface sends now: its MTU plus the
    /// Ethernet header. Written by the control thread (`refreshMTU`).
    @usableFromInline let maxFrameLengthValue: Atomic<Int>

    /// Attaches to existing interface `interface` with `queues` sockets.
    /// Transmit slots are sized for the interface's MTU now (for a GSO
    /// super-frame with `offloads` on); a later raise leaves longer frames
    /// counted as `too_long`. Every frame arrives but the
    /// host's own (unicast to the interface's address), which is the host's
    /// business, not the guests'.
    public init(interface: String, queues: Int = 1, receiveRing: PacketRingSocket.ReceiveRing = .standard,
                transmitRing: PacketRingSocket.TransmitRing? = nil, offloads: PortSpec.Offloads = .on) throws {
        guard (1...Self.maxQueues).contains(queues) else {
            throw InvalidArgument("packet \(interface): \(queues) queues, must be 1...\(Self.maxQueues)")
        }
        var options = PacketRingSocket.Options(receiveRing: receiveRing, promiscuous: true, ignoreOutgoing: true,
                                               qdiscBypass: true, fanout: queues > 1 ? .newGroup : .none,
                                               filter: .groupOrOtherHost, virtioNetHeaders: true)
        var opened: [PacketRingSocket] = []
        let mtu = try NetworkInterface.mtu(of: interface)
        let transmit = transmitRing ?? (offloads == .on ? .superFrames : .standard(mtu: mtu))
        options.transmitRing = transmit
        for q in 0..<queues {
            let socket = try PacketRingSocket(interface: interface, options: options)
            if q == 0, let group = socket.fanoutGroup { options.fanout = .join(group) }
            opened.append(socket)
        }
        self.interface = interface
        sockets = opened
        queueCount = queues
        counters = (0..<queues).map { _ in QueueCounters() }
        self.receiveRing = receiveRing
        self.transmitRing = transmit
        offloadLevel = offloads
        maxFrameLengthValue = Atomic(mtu &+ Ethernet.headerSize)
    }

    /// One line for the log at creation.
    public var summary: String {
        let rx = "TPACKET_V3 rx ring \(receiveRing.blockCount) blocks × \(receiveRing.blockSize >> 10) KiB"
        let tx = "tx ring \(transmitRing.slotCount) slots × \(transmitRing.slotSize) bytes"
        let fanout = sockets[0].fanoutGroup.map { ", fanout group \($0) (hash)" } ?? ""
        return "packet \(interface): \(queueCount) queue(s), \(rx), \(tx), promiscuous, qdisc bypass, "
            + "virtio-net headers, offloads \(offloadLevel.rawValue)\(fanout)"
    }

    /// The errno of the last failure other than "not now" (0 if none), for the control plane.
    public var lastError: Int32 { lastErrorCode.load(ordering: .relaxed) }

    /// The descriptor of `queue`: readable (POLLIN) when the kernel handed a
    /// block over, POLLERR when the interface went down or away (`takeSocketError`).
    public func descriptor(queue: Int) -> Int32 { sockets[queue].fd }

    /// The longest frame `push` sends untagged (one with an 802.1Q tag may be 4 bytes longer).
    @inlinable
    public var maxFrameLength: Int { maxFrameLengthValue.load(ordering: .relaxed) }

    /// Reads the MTU again (someone may `ip link set mtu`), from the control thread.
    /// An interface that cannot be asked (gone) keeps its last value.
    public func refreshMTU() {
        guard let mtu = try? sockets[0].interfaceMTU() else { return }
        maxFrameLengthValue.store(mtu &+ Ethernet.headerSize, ordering: .relaxed)
    }

    /// After `poll` reported POLLERR on `queue`'s descriptor: takes the
    /// socket's error (ENETDOWN: the interface went down or away), counts it
    /// as `io_error` and remembers it. Taking it stops the POLLERR, so a
    /// sleeping worker does not spin on a dead interface.
    public func takeSocketError(queue q: Int) {
        let error = sockets[q].takeSocketError(counters: counters[q])
        if error != 0 { lastErrorCode.store(error, ordering: .relaxed) }
    }

    /// What the port takes in a frame's virtio-net header (`offloads=`). With
    /// `off` it still takes partial checksums: it finishes them in its slot,
    /// the one copy the frame gets anyway.
    @inlinable
    public var offloadAcceptance: OffloadAcceptance {
        offloadLevel == .on ? .everything : .partialChecksum
    }

    // MARK: Data path

    /// Hands out the frames of `queue`'s receive ring until the batch is full
    /// or the kernel has no more (PacketRingSocket+Batch.swift).
    @inlinable
    public func pull(queue q: Int, into batch: PacketBatch) -> Int {
        // Indexing checks `q` before the ring is touched.
        sockets[q].pull(into: batch, counters: counters[q])
    }

    /// Gives the kernel back the receive blocks whose frames were all pulled
    /// and, by now, copied on.
    @inlinable
    public func release(queue q: Int) {
        sockets[q].returnConsumedBlocks()
    }

    /// Copies every frame of `batch` into a transmit slot behind its virtio-net
    /// header (zeroed with `offloads=off`, which finishes partial checksums in
    /// the slot instead), and hands the burst to the kernel with one `sendto`.
    /// A frame longer than the MTU (a GSO frame: than a slot) is dropped as `too_long`; one
    /// whose checksum request points outside it as `bad_checksum_offset`;
    /// frames that find the ring full, or that the kernel does not take now,
    /// as `tx_full`; frames refused with an error (the interface is down or
    /// gone) as `io_error`. With a `segmenter`, each GSO frame the port does
    /// not pass on (`offloads=csum` or `off`) is cut straight into transmit
    /// slots, one per segment (PacketPort+Segments.swift), its drops counted
    /// per segment, so it is tried even when the ring is full.
    @inlinable
    public func push(queue q: Int, from batch: PacketBatch, segmenter: SoftwareSegmenter? = nil) {
        // Indexing checks `q` before the ring is touched.
        let counters = self.counters[q]
        let socket = sockets[q]
        let slotCapacity = socket.transmitSlotCapacity
        let untaggedLimit = maxFrameLength
        let headers = socket.headerSize
        let passOffloads = offloadLevel != .off
        let passesSegmentation = offloadLevel == .on
        let count = batch.count
        var burst = PacketTransmitBurst(socket: socket, counters: counters)
        var f = 0
        while f < count {
            if let segmenter, VirtioNetHeader.gsoType(at: batch.header(f)) != VirtioNetHeader.gsoNone,
               !passesSegmentation {
                var sink = TransmitSlotSegmentSink(burst: burst, passOffloads: passOffloads)
                segmenter.transmit(batch.frameSegments(f), header: batch.header(f),
                                   checksum: passOffloads ? .partial : .complete, untaggedLimit: untaggedLimit,
                                   into: &sink, counters: counters)
                burst = sink.burst
                f &+= 1
                continue
            }
            let length = batch.length(of: f)
            guard let slot = burst.nextSlot() else {
                // Slots free only as the driver finishes frames.
                if segmenter == nil {
                    counters.dropped(.txFull, count &- f)
                    break
                }
                counters.dropped(.txFull)
                f &+= 1
                continue
            }
            let refused: DropReason?
            if passOffloads {
                refused = batch.gatherWithVirtioNetHeader(f, into: slot, limit: slotCapacity, untaggedLimit: untaggedLimit)
            } else {
                // A zeroed header: nothing asked of the kernel; the checksum finished here.
                VirtioNetHeader.storeNone(to: slot)
                refused = batch.gather(f, into: slot + headers, limit: slotCapacity &- headers, untaggedLimit: untaggedLimit)
            }
            if let reason = refused {
                counters.dropped(reason)
                f &+= 1
                continue
            }
            burst.commit(length: headers &+ length, frameBytes: length)
            f &+= 1
        }
        burst.hand()
        if burst.failure != 0 { lastErrorCode.store(burst.failure, ordering: .relaxed) }
    }
}
