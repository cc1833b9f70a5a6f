import Glibc
import Logging
import Model
import Packets
import Platform
import Synchronization

/// One VXLAN network (VNI) stretched over a routed underlay (RFC 7348):
/// frames pushed to the port leave as UDP datagrams to remote VTEPs, and
/// datagrams from them arrive as frames.
///
/// Underlay: the kernel's sockets (`TunnelSockets`): a UDP socket bound to
/// `local`:`udpPort` receives, a raw UDP socket sends, each a burst per
/// system call (`recvmmsg`, `sendmmsg`). Ferry writes the outer UDP header
/// (the source port of the inner flow's hash bucket, checksum zero over
/// IPv4) and the VXLAN header; the kernel adds the IP header and routes it.
///
/// Sending: a frame whose destination the forwarding database learned behind
/// one VTEP (the batch's tunnel endpoint) goes to that VTEP; any other
/// (broadcast, multicast, unknown unicast) to every VTEP of `remote=`, one
/// datagram each from the same buffer (head-end replication). A frame too
/// long for the underlay's MTU (`maxInnerFrameLength`) is dropped as
/// `too_long`: VTEPs never fragment (RFC 7348 §4.3). A run of datagrams to
/// one VTEP of one flow, of one length but the last, goes as one UDP GSO
/// message through the flow bucket's own UDP socket (`FlowSenders`, whose
/// port is that source port): routed and queued once for up to 64 datagrams.
///
/// Receiving: a datagram is dropped, each with its own reason, when its sender
/// is not a VTEP of `remote=` (`vxlan_unknown_vtep`; without `remote=` every
/// sender is taken and numbered, up to the table's capacity), when it is
/// shorter than the VXLAN and inner Ethernet headers (`vxlan_truncated`), has
/// the I flag clear (`vxlan_flag_clear`), or names another VNI
/// (`vxlan_unknown_vni`). A good one becomes a frame in the batch, by
/// reference into the receive buffer, marked with its sender's number so that
/// its source address is learned behind that VTEP.
///
/// Counters are per datagram: a frame flooded to three VTEPs counts three
/// `tx_packets`; `TunnelEndpoints` keeps them per VTEP too. One queue.
public final class VxlanPort {
    public let vni: UInt32
    public let local: InternetAddress
    public let udpPort: UInt16
    public let endpoints: TunnelEndpoints
    /// No `remote=` and no EVPN: any sender is a VTEP (and is numbered when first heard).
    public let acceptsAnySender: Bool
    /// EVPN through the kernel's bridge FDB: the VTEPs, the flood list and the remote MACs
    /// come from FRR (Engine/EvpnKernelFDB.swift), and the port's sources are not learned.
    public let evpn: EvpnDevices?
    /// Whether a frame's source is learned behind the VTEP it came from (not with EVPN).
    public var learnsSources: Bool { evpn == nil }
    /// With EVPN: the kernel bridge table shared with zebra.
    public let kernelFDB: KernelBridgeFDB?
    /// The interface holding `local`, whose MTU bounds what is sent; nil if none was found.
    public let underlayInterface: String?
    /// Queue 0: the kernel's sockets; 1 + q: datagrams queue q of the xdp uplink took (`via=`,
    /// VxlanPort+UnderlayReceive.swift), each written by the worker pulling that queue only.
    public var counters: [QueueCounters] {
        [socketCounters] + underlayCounters.prefix(max(1, underlayQueuesInUse.load(ordering: .relaxed)))
    }
    @usableFromInline let socketCounters = QueueCounters()
    /// One per queue an uplink may have (`PortLimits.xdpQueues`) with `via=`, else one (never
    /// written): allocated once, so a worker never reads a table the control thread replaces.
    @usableFromInline let underlayCounters: [QueueCounters]
    /// The queues of the uplink connected last (reports show that many).
    let underlayQueuesInUse = Atomic<Int>(0)
    public var queueCount: Int { 1 }
    /// With `via=`: the AF_XDP fast path, whose uplink the switch wires (VxlanPort+Underlay.swift).
    public let underlay: VxlanUnderlay?

    let receiver: FileDescriptor
    let sender: FileDescriptor
    /// The UDP sockets of segmented sends, one per flow bucket (their ports are the source ports).
    let flowSenders: FlowSenders
    @usableFromInline let receiverDescriptor: Int32
    @usableFromInline let senderDescriptor: Int32
    @usableFromInline let flowSenderDescriptors: UnsafeMutablePointer<Int32>
    @usableFromInline let flowSourcePorts: UnsafeMutablePointer<UInt16>
    @usableFromInline let received: DatagramBatch
    @usableFromInline let receiveBuffers: UnsafeMutableRawPointer
    @usableFromInline let receiveSlots: Int
    @usableFromInline let outgoing: DatagramBatch
    /// Where a push lays out its datagrams (UDP and VXLAN headers, then the frame), one after the other.
    @usableFromInline let sendBuffers: UnsafeMutableRawPointer
    /// Per datagram of a push: its offset in the arena, its inner frame's
    /// length, its first and last VTEP numbers (low and high 16 bits), its flow sender.
    @usableFromInline let datagramOffsets: UnsafeMutablePointer<Int>
    @usableFromInline let datagramLengths: UnsafeMutablePointer<Int>
    @usableFromInline let datagramTargets: UnsafeMutablePointer<UInt32>
    @usableFromInline let datagramFlows: UnsafeMutablePointer<UInt8>
    /// Per outgoing message: its socket, the VTEP number it goes to, how many
    /// datagrams it carries and their inner frames' bytes.
    @usableFromInline let messageDescriptors: UnsafeMutablePointer<Int32>
    @usableFromInline let messageEndpoints: UnsafeMutablePointer<UInt16>
    @usableFromInline let messageDatagrams: UnsafeMutablePointer<Int>
    @usableFromInline let messageLengths: UnsafeMutablePointer<Int>
    @usableFromInline let maxInnerFrameLengthValue: Atomic<Int>
    @usableFromInline let lastErrorCode = Atomic<Int32>(0)
    /// The kernel refused a segmented send: every datagram goes alone from then on.
    @usableFromInline let segmentsRefused = Atomic<Bool>(false)

    /// A received datagram's buffer: the longest inner frame a 9000-byte
    /// jumbo underlay carries, and more; a longer datagram is cut by the
    /// kernel and dropped as `rx_buffer_too_small`.
    public static let receiveSlotSize = 16 * 1024
    /// The longest outgoing datagram: UDP and VXLAN headers, then the frame.
    public static let sendSlotSize = 16 * 1024
    /// The send arena: a burst of frames, or a few 64 KiB super-frames cut into segments.
    public static let sendArenaSize = 2 << 20
    /// What a super-frame cut into segments may take of the arena at most: 64 KiB
    /// of payload, and headers and encapsulation for every segment.
    @usableFromInline static var superFrameRoom: Int { 64 * 1024 &+ SoftwareSegmenter.maxSegmentsPerFrame &* 256 }
    /// Datagrams (and messages) one flush may carry (a burst times the flood list, in rounds).
    public static let messagesPerSend = 1024
    /// Source ports a flow hash picks from: one UDP socket each.
    public static let flowSenderCount = 16
    /// Datagrams one segmented message carries at most (the kernel's UDP_MAX_SEGMENTS before 6.x: 64).
    @usableFromInline static var segmentsPerSend: Int { 64 }
    /// The UDP payload of one segmented message at most: an IP packet's 64 KiB, less the headers.
    @usableFromInline static var segmentedPayloadLimit: Int {
        0xFFFF &- VXLAN.udpHeaderSize &- VXLAN.ipv6HeaderSize
    }
    @usableFromInline static var encapsulation: Int { VXLAN.udpHeaderSize &+ VXLAN.headerSize }

    /// Opens the underlay sockets for VNI `vni` on `local`:`udpPort`, with
    /// `remotes` as the flood list (none: every sender accepted, unless `evpn`
    /// names the kernel devices FRR fills), taking bursts of up to `batchCapacity` frames.
    public init(vni: UInt32, local: InternetAddress, remotes: [InternetAddress], udpPort: UInt16,
                evpn: EvpnDevices? = nil, via: String? = nil, batchCapacity: Int,
                logger: Logger = Logger(label: "ferry")) throws {
        guard PortLimits.vxlanVNIs.contains(vni) else { throw InvalidArgument("vxlan: VNI \(vni) is not 24 bits") }
        guard remotes.allSatisfy({ $0.isIPv6 == local.isIPv6 }) else {
            throw InvalidArgument("vxlan: remote VTEPs must be of the local address's family (\(local))")
        }
        self.vni = vni
        self.local = local
        self.udpPort = udpPort
        endpoints = TunnelEndpoints(remotes: remotes, ipv6: local.isIPv6)
        // A flood's datagram alone in a burst takes one message per VTEP, which `hasRoom` lets
        // through unchecked: the message tables hold one per entry the table can ever have.
        precondition(endpoints.capacity <= Self.messagesPerSend, "more VTEPs than messages in one send")
        acceptsAnySender = remotes.isEmpty && evpn == nil
        self.evpn = evpn
        kernelFDB = try evpn.map { try KernelBridgeFDB(devices: $0) }
        underlayInterface = NetworkInterface.name(holding: local)
        let mtu = try underlayInterface.map { try NetworkInterface.mtu(of: $0) } ?? 1500
        maxInnerFrameLengthValue = Atomic(Self.innerFrameLimit(mtu: mtu, ipv6: local.isIPv6))
        receiver = try TunnelSockets.receiver(local: local, port: udpPort, receiveBuffer: 4 << 20)
        sender = try TunnelSockets.sender(local: local, sendBuffer: 4 << 20)
        // Ports from one derived from the VNI, so that two ports (or two Ferrys) rarely try the same ones.
        flowSenders = try FlowSenders(local: local, count: Self.flowSenderCount,
                                      firstTried: UInt16(49_152 + Int(vni % 977) * 16), sendBuffer: 4 << 20)
        // SAFETY: FlowSenders(count:) opened flowSenderCount sockets, so both of its arrays hold the
        // flowSenderCount values copied into what was just allocated.
        flowSenderDescriptors = .allocate(capacity: Self.flowSenderCount)
        flowSenderDescriptors.initialize(from: flowSenders.descriptors, count: Self.flowSenderCount)
        flowSourcePorts = .allocate(capacity: Self.flowSenderCount)
        flowSourcePorts.initialize(from: flowSenders.ports, count: Self.flowSenderCount)
        receiverDescriptor = receiver.rawValue
        senderDescriptor = sender.rawValue
        receiveSlots = batchCapacity
        received = DatagramBatch(capacity: batchCapacity)
        receiveBuffers = .allocate(byteCount: batchCapacity * Self.receiveSlotSize, alignment: 64)
        outgoing = DatagramBatch(capacity: Self.messagesPerSend)
        sendBuffers = .allocate(byteCount: Self.sendArenaSize, alignment: 64)
        let n = Self.messagesPerSend
        datagramOffsets = Self.table(of: 0, count: n)
        datagramLengths = Self.table(of: 0, count: n)
        datagramTargets = Self.table(of: 0, count: n)
        datagramFlows = Self.table(of: 0, count: n)
        messageDescriptors = Self.table(of: -1, count: n)
        messageEndpoints = Self.table(of: 0, count: n)
        messageDatagrams = Self.table(of: 0, count: n)
        messageLengths = Self.table(of: 0, count: n)
        underlayCounters = (0..<(via == nil ? 1 : PortLimits.xdpQueues)).map { _ in QueueCounters() }
        let table = endpoints
        underlay = via.map { VxlanUnderlay(portName: $0, local: local, endpoints: table, batchCapacity: batchCapacity,
                                           logger: logger) }
    }

    /// Sends through `interface` (the `xdp:` port `via=` names), and sizes inner
    /// frames by its MTU. Control thread, while no worker sends to the port.
    public func connectUnderlay(interface: String, queues: Int) throws {
        guard let underlay else { return }
        precondition(queues <= underlayCounters.count, "more uplink queues than the port counts")
        try underlay.connect(interface: interface)
        underlayQueuesInUse.store(max(queues, underlayQueuesInUse.load(ordering: .relaxed)), ordering: .relaxed)
        let mtu = try NetworkInterface.mtu(of: interface)
        maxInnerFrameLengthValue.store(Self.innerFrameLimit(mtu: mtu, ipv6: local.isIPv6), ordering: .relaxed)
    }

    /// `count` values, all `value`, allocated once for the port's life.
    private static func table<Value>(of value: Value, count: Int) -> UnsafeMutablePointer<Value> {
        let table = UnsafeMutablePointer<Value>.allocate(capacity: count)
        // SAFETY: the fill covers exactly the count just allocated.
        table.initialize(repeating: value, count: count)
        return table
    }

    deinit {
        receiveBuffers.deallocate()
        sendBuffers.deallocate()
        flowSenderDescriptors.deallocate()
        flowSourcePorts.deallocate()
        datagramOffsets.deallocate()
        datagramLengths.deallocate()
        datagramTargets.deallocate()
        datagramFlows.deallocate()
        messageDescriptors.deallocate()
        messageEndpoints.deallocate()
        messageDatagrams.deallocate()
        messageLengths.deallocate()
    }

    /// One line for the log at creation.
    public var summary: String {
        let remotes = acceptsAnySender ? "any sender"
            : evpn != nil ? "from EVPN (\(evpn!.vxlanDevice), local MACs on \(evpn!.bridgePort))"
            : (1...endpoints.count).map { "\(endpoints.address($0))" }.joined(separator: "+")
        return "vxlan VNI \(vni): \(local) UDP \(udpPort), remote VTEPs \(remotes), inner frames up to "
            + "\(maxInnerFrameLength) bytes (underlay \(underlayInterface ?? "interface not found"))"
            + (underlay.map { ", sent through xdp port \($0.portName)" } ?? "")
    }

    /// Queue `queue`'s counters without building the list: 0 the socket's, 1 + q uplink queue q's.
    @inlinable
    public func counters(queue: Int) -> QueueCounters {
        queue == 0 ? socketCounters : underlayCounters[queue &- 1]
    }

    /// The errno of the last failure other than "not now" (0 if none).
    public var lastError: Int32 { lastErrorCode.load(ordering: .relaxed) }

    /// Readable while a datagram waits.
    public var descriptor: Int32 { receiverDescriptor }

    /// The longest inner frame (Ethernet header and any tag included) one
    /// datagram carries within the underlay interface's MTU.
    @inlinable
    public var maxInnerFrameLength: Int { maxInnerFrameLengthValue.load(ordering: .relaxed) }

    /// Reads the underlay interface's MTU again (control thread).
    public func refreshMTU() {
        guard let name = underlay?.connectedInterface ?? underlayInterface, let mtu = try? NetworkInterface.mtu(of: name) else { return }
        maxInnerFrameLengthValue.store(Self.innerFrameLimit(mtu: mtu, ipv6: local.isIPv6), ordering: .relaxed)
    }

    /// The longest inner frame a datagram within `mtu` holds, and a send buffer too.
    static func innerFrameLimit(mtu: Int, ipv6: Bool) -> Int {
        min(mtu - VXLAN.overhead(ipv6: ipv6), sendSlotSize - encapsulation)
    }

    // MARK: Data path

    /// Receives a burst of datagrams and puts their inner frames in `batch`;
    /// returns how many datagrams were taken, dropped ones included.
    @inlinable
    public func pull(queue _: Int, into batch: PacketBatch) -> Int {
        let counters = socketCounters
        var budget = min(batch.room, receiveSlots)
        if budget > batch.freeSegments { budget = batch.freeSegments }
        if budget == 0 { return 0 }
        var i = 0
        while i < budget {
            // SAFETY: i < budget <= receiveSlots: each slot lies in the receiveSlots * receiveSlotSize
            // bytes of receiveBuffers.
            received.prepareReceive(i, into: receiveBuffers + i &* Self.receiveSlotSize, length: Self.receiveSlotSize)
            i &+= 1
        }
        let arrived: Int
        do throws(SystemError) {
            arrived = try received.receive(on: receiverDescriptor, count: budget)
        } catch {
            // An ICMP error queued on the socket (ECONNREFUSED...): reported once, taken.
            lastErrorCode.store(error.errno, ordering: .relaxed)
            return 0
        }
        var burst = ReceiveBurst()
        i = 0
        while i < arrived {
            let d = i
            i &+= 1
            if received.wasTruncated(d) {
                counters.dropped(.rxBufferTooSmall)
                continue
            }
            guard let senderAddress = InternetAddress(socketAddress: received.sender(d)) else {
                counters.dropped(.vxlanUnknownVTEP)
                continue
            }
            // SAFETY: d < arrived <= budget <= receiveSlots, so the datagram's slot lies in
            // receiveBuffers, and its received length is at most the slot's.
            admit(receiveBuffers + d &* Self.receiveSlotSize, length: received.receivedLength(d),
                  from: senderAddress, numbering: acceptsAnySender, burst: &burst,
                  token: UInt32(truncatingIfNeeded: d), into: batch, counters: counters)
        }
        burst.count(on: counters, endpoints: endpoints)
        return arrived
    }

    /// What a receive burst took (frames and inner bytes), and the last sender it
    /// met with its VTEP number: a burst mostly comes from one, so that VTEP's
    /// counters (which several workers add to) are added to once per run of its
    /// datagrams, not per datagram.
    @usableFromInline
    struct ReceiveBurst {
        @usableFromInline var address = InternetAddress(ipv4NetworkOrder: 0)
        @usableFromInline var number: UInt16 = 0
        @usableFromInline var frames = 0
        @usableFromInline var bytes: UInt64 = 0
        /// Taken from `number` since it became the burst's sender, not yet on its VTEP's counters.
        @usableFromInline var runFrames = 0
        @usableFromInline var runBytes: UInt64 = 0

        @inlinable
        init() {}

        /// Moves the run's counts to its VTEP's counters.
        @inlinable
        mutating func endRun(on endpoints: TunnelEndpoints) {
            if runFrames == 0 { return }
            endpoints.received(from: Int(number), packets: runFrames, bytes: runBytes)
            runFrames = 0
            runBytes = 0
        }

        /// Counts what the burst took on the queue's counters and the VTEPs'.
        @inlinable
        mutating func count(on counters: QueueCounters, endpoints: TunnelEndpoints) {
            endRun(on: endpoints)
            if frames > 0 { counters.received(packets: frames, bytes: bytes) }
        }
    }

    /// The one VXLAN decoder of both receive paths (the kernel's socket, an xdp
    /// uplink's frames): the UDP payload of `length` bytes at `datagram` from
    /// `sender` becomes a frame in `batch`, by reference, marked with the sender's
    /// VTEP number; or is dropped under its reason (`vxlan_unknown_vtep`,
    /// `vxlan_truncated`, `vxlan_flag_clear`, `vxlan_unknown_vni`). With
    /// `numbering`, an unknown sender is added to the table (its one writer only).
    /// A frame taken is added to `burst`, which the caller counts at the end (`ReceiveBurst.count`).
    // SAFETY: `datagram` holds `length` readable bytes (the caller's check); the inner frame
    // (offset, length) is what innerFrame found inside them.
    @inlinable
    func admit(_ datagram: UnsafeMutableRawPointer, length: Int, from sender: InternetAddress, numbering: Bool,
               burst: inout ReceiveBurst, token: UInt32, into batch: PacketBatch, counters: QueueCounters) {
        var number = burst.number != 0 && sender == burst.address ? burst.number : endpoints.number(of: sender)
        if number == 0 && numbering { number = endpoints.append(sender) }
        if number == 0 {
            counters.dropped(.vxlanUnknownVTEP)
            return
        }
        if number != burst.number { burst.endRun(on: endpoints) }
        burst.address = sender
        burst.number = number
        switch VXLAN.innerFrame(of: datagram, length: length, vni: vni) {
        case .failure(.truncated):
            counters.dropped(.vxlanTruncated)
        case .failure(.validFlagClear):
            counters.dropped(.vxlanFlagClear)
        case .failure(.unknownVNI):
            counters.dropped(.vxlanUnknownVNI)
        case .success(let inner):
            batch.clearHeader(batch.count)
            batch.setTunnelEndpoint(batch.count, number)
            batch.append(base: datagram + inner.offset, length: UInt32(truncatingIfNeeded: inner.length), token: token)
            burst.frames &+= 1
            burst.bytes &+= UInt64(inner.length)
            burst.runFrames &+= 1
            burst.runBytes &+= UInt64(inner.length)
        }
    }

    /// The frames were copied on; their buffers are reused by the next pull.
    @inlinable
    public func release(queue _: Int) {}

    /// Encapsulates every frame of `batch` and sends the datagrams: to the
    /// frame's VTEP, or to every VTEP of the flood list. With a `segmenter`,
    /// each GSO frame is cut straight into the send arena, one datagram per
    /// segment, every checksum computed (VxlanPort+Segments.swift); its drops
    /// are counted per segment.
    @inlinable
    public func push(queue _: Int, from batch: PacketBatch, segmenter: SoftwareSegmenter? = nil) {
        let counters = socketCounters
        let limit = maxInnerFrameLength
        let known = endpoints.count
        let floodCount = endpoints.floodCount
        var burst = SendBurst()
        let count = batch.count
        var f = 0
        while f < count {
            let frame = f
            f &+= 1
            guard let (first, last) = Self.endpoints(of: batch.tunnelEndpoint(of: frame), known: known,
                                                     floodCount: floodCount) else {
                counters.dropped(.noDestination)
                continue
            }
            let copies = last &- first &+ 1
            let targets = UInt32(truncatingIfNeeded: first) | UInt32(truncatingIfNeeded: last) << 16
            if let segmenter, VirtioNetHeader.gsoType(at: batch.header(frame)) != VirtioNetHeader.gsoNone {
                if !hasRoom(burst, bytes: Self.superFrameRoom,
                            datagrams: SoftwareSegmenter.maxSegmentsPerFrame, copies: copies) {
                    flush(&burst, counters: counters)
                }
                var sink = TunnelSegmentSink(port: self, burst: burst, targets: targets, copies: copies)
                segmenter.transmit(batch.frameSegments(frame), header: batch.header(frame), checksum: .complete,
                                   untaggedLimit: limit, into: &sink, counters: counters)
                burst = sink.burst
                continue
            }
            let length = batch.length(of: frame)
            if length > limit {
                counters.dropped(.tooLong)
                continue
            }
            if !hasRoom(burst, bytes: Self.sendSlotSize, datagrams: 1, copies: copies) {
                flush(&burst, counters: counters)
            }
            // SAFETY: hasRoom left sendSlotSize bytes after arenaUsed in the arena (flushed to 0
            // otherwise; sendSlotSize <= sendArenaSize), and gather writes at most sendSlotSize -
            // encapsulation bytes after the headers' room.
            let buffer = sendBuffers + burst.arenaUsed
            if let refused = batch.gather(frame, into: buffer + Self.encapsulation,
                                          limit: Self.sendSlotSize &- Self.encapsulation, untaggedLimit: limit) {
                counters.dropped(refused)
                continue
            }
            record(&burst, at: buffer, innerLength: length, targets: targets, copies: copies,
                   flow: flowSender(of: buffer + Self.encapsulation, length: length))
        }
        if burst.datagrams > 0 { flush(&burst, counters: counters) }
    }

    /// The VTEPs a frame marked with tunnel endpoint `target` goes to, `first...last`:
    /// the one it was learned behind, or for 0 (a flood) first 0, meaning the flood list's
    /// members among VTEPs 1...last (an EVPN port's list changes with type-3 routes; the
    /// count bounds the messages from above); nil when there is no VTEP to send to.
    @inlinable
    static func endpoints(of target: UInt16, known: Int, floodCount: Int) -> (first: Int, last: Int)? {
        let number = Int(target)
        if number != 0 && number <= known { return (number, number) }
        return floodCount > 0 ? (0, known) : nil
    }

    /// What one push has encapsulated and not yet sent: datagrams laid out
    /// one after the other in the send arena, and how many messages they
    /// make at most (one per VTEP each).
    @usableFromInline
    struct SendBurst {
        @usableFromInline var datagrams = 0
        @usableFromInline var arenaUsed = 0
        @usableFromInline var messages = 0

        @inlinable
        init() {}
    }

    /// Whether `burst` takes `datagrams` more of up to `bytes` in all, each to `copies` VTEPs.
    @inlinable
    func hasRoom(_ burst: SendBurst, bytes: Int, datagrams: Int, copies: Int) -> Bool {
        if burst.datagrams == 0 { return true }
        return burst.arenaUsed &+ bytes <= Self.sendArenaSize && burst.datagrams &+ datagrams <= Self.messagesPerSend
            && burst.messages &+ datagrams &* copies <= Self.messagesPerSend
    }

    /// The flow sender of the inner frame of `length` bytes at `inner`: its flow hash's bucket.
    @inlinable
    func flowSender(of inner: UnsafeRawPointer, length: Int) -> Int {
        Int(VXLAN.sourcePort(frame: inner, length: length) & UInt16(truncatingIfNeeded: Self.flowSenderCount &- 1))
    }

    /// Writes the UDP and VXLAN headers before the inner frame of
    /// `innerLength` bytes at `buffer` + `encapsulation` (the arena's next
    /// bytes) and adds the datagram to `burst`.
    // SAFETY: the caller made room: `buffer` starts encapsulation + innerLength bytes inside the arena
    // (hasRoom, or beginSegment for a segment); d = burst.datagrams < messagesPerSend, the tables'
    // length (hasRoom's datagram test, or d = 0); flow < flowSenderCount (flowSender masks it).
    @inlinable
    func record(_ burst: inout SendBurst, at buffer: UnsafeMutableRawPointer, innerLength: Int, targets: UInt32,
                copies: Int, flow: Int) {
        let datagramLength = Self.encapsulation &+ innerLength
        // UDP: the flow's source port, destination, length, checksum (zero: none
        // over IPv4; the kernel's over IPv6). A segmented send has the kernel
        // write its own from the flow sender's socket, the same port.
        buffer.storeBytes(of: flowSourcePorts[flow].bigEndian, as: UInt16.self)
        buffer.storeBytes(of: udpPort.bigEndian, toByteOffset: 2, as: UInt16.self)
        buffer.storeBytes(of: UInt16(truncatingIfNeeded: datagramLength).bigEndian, toByteOffset: 4, as: UInt16.self)
        buffer.storeBytes(of: 0, toByteOffset: 6, as: UInt16.self)
        VXLAN.writeHeader(vni: vni, at: buffer + VXLAN.udpHeaderSize)
        let d = burst.datagrams
        datagramOffsets[d] = buffer - sendBuffers
        datagramLengths[d] = innerLength
        datagramTargets[d] = targets
        datagramFlows[d] = UInt8(truncatingIfNeeded: flow)
        burst.datagrams = d &+ 1
        burst.arenaUsed &+= datagramLength
        burst.messages &+= copies
    }

    /// Sends what `burst` holds and empties it. A run of datagrams to one VTEP
    /// of one flow, all of one length but the last (which may be shorter: the
    /// end of a segmented frame), goes as one segmented message through the
    /// flow's UDP socket; any other datagram through the raw socket, once per
    /// VTEP of its list. Counts what went (per port and per VTEP) and what did not.
    @inlinable
    func flush(_ burst: inout SendBurst, counters: QueueCounters) {
        // SAFETY: d < count = burst.datagrams <= messagesPerSend, the datagram tables' length, and each
        // datagram's offset and length lie in the arena (record); messages stays below messagesPerSend:
        // hasRoom bounds burst.messages, and a burst's first datagram takes at most endpoints.capacity
        // <= messagesPerSend (init's precondition); flow < flowSenderCount.
        let segmenting = !segmentsRefused.load(ordering: .relaxed)
        let count = burst.datagrams
        burst = SendBurst()
        var messages = 0
        var d = 0
        while d < count {
            let targets = datagramTargets[d]
            let first = Int(targets & 0xFFFF)
            let last = Int(targets >> 16)
            let length = datagramLengths[d]
            if segmenting && first == last {
                let flow = datagramFlows[d]
                var run = 1
                var innerBytes = length
                var payload = VXLAN.headerSize &+ length
                while d &+ run < count && run < Self.segmentsPerSend {
                    let next = d &+ run
                    let nextLength = datagramLengths[next]
                    if datagramTargets[next] != targets || datagramFlows[next] != flow || nextLength > length
                        || payload &+ VXLAN.headerSize &+ nextLength > Self.segmentedPayloadLimit { break }
                    run &+= 1
                    innerBytes &+= nextLength
                    payload &+= VXLAN.headerSize &+ nextLength
                    if nextLength < length { break }
                }
                if run > 1 {
                    var v = d
                    while v < d &+ run {
                        outgoing.setVector(v, base: sendBuffers + (datagramOffsets[v] &+ VXLAN.udpHeaderSize),
                                           length: VXLAN.headerSize &+ datagramLengths[v])
                        v &+= 1
                    }
                    outgoing.prepareSend(messages, vectors: d, count: run, to: endpoints.socketAddress(first),
                                         nameLength: endpoints.socketAddressLength, destinationPort: udpPort,
                                         segmentSize: VXLAN.headerSize &+ length)
                    note(messages, descriptor: flowSenderDescriptors[Int(flow)], endpoint: first, datagrams: run,
                         bytes: innerBytes)
                    messages &+= 1
                    d &+= run
                    continue
                }
            }
            outgoing.setVector(d, base: sendBuffers + datagramOffsets[d], length: Self.encapsulation &+ length)
            var e = max(first, 1)
            while e <= last {
                if first == 0 && !endpoints.floods(e) {
                    e &+= 1
                    continue
                }
                outgoing.prepareSend(messages, vectors: d, count: 1, to: endpoints.socketAddress(e),
                                     nameLength: endpoints.socketAddressLength)
                note(messages, descriptor: senderDescriptor, endpoint: e, datagrams: 1, bytes: length)
                messages &+= 1
                e &+= 1
            }
            d &+= 1
        }
        // One sendmmsg per run of messages through the same socket.
        var sent = 0
        var sentBytes: UInt64 = 0
        var start = 0
        while start < messages {
            let descriptor = messageDescriptors[start]
            var end = start &+ 1
            while end < messages && messageDescriptors[end] == descriptor { end &+= 1 }
            send(from: start, to: end, on: descriptor, counters: counters, sent: &sent, sentBytes: &sentBytes)
            start = end
        }
        if sent > 0 { counters.sent(packets: sent, bytes: sentBytes) }
    }

    /// Message `m` goes through `descriptor` to VTEP `endpoint`, `datagrams` datagrams of `bytes` inner bytes.
    @inlinable
    func note(_ m: Int, descriptor: Int32, endpoint: Int, datagrams: Int, bytes: Int) {
        // SAFETY: m < messagesPerSend, the message tables' length (flush's bound).
        messageDescriptors[m] = descriptor
        messageEndpoints[m] = UInt16(truncatingIfNeeded: endpoint)
        messageDatagrams[m] = datagrams
        messageLengths[m] = bytes
    }

    /// Sends messages `from..<end`, all through `descriptor`, and counts them.
    // SAFETY: m < end <= messages <= messagesPerSend, the message tables' length (flush).
    @inlinable
    func send(from first: Int, to end: Int, on descriptor: Int32, counters: QueueCounters, sent: inout Int,
              sentBytes: inout UInt64) {
        var next = first
        while next < end {
            let outcome = outgoing.send(on: descriptor, from: next, count: end)
            var m = next
            while m < outcome.sent {
                endpoints.sent(to: Int(messageEndpoints[m]), packets: messageDatagrams[m], bytes: messageLengths[m])
                sent &+= messageDatagrams[m]
                sentBytes &+= UInt64(messageLengths[m])
                m &+= 1
            }
            if outcome.error == 0 { break }
            if outcome.error == EAGAIN || outcome.error == ENOBUFS {
                // The send buffer is full: nothing more goes through this socket in this burst.
                var unsent = 0
                while m < end {
                    unsent &+= messageDatagrams[m]
                    m &+= 1
                }
                counters.dropped(.txFull, unsent)
                break
            }
            // This message cannot go (no route, too long for the path...): the rest may.
            lastErrorCode.store(outcome.error, ordering: .relaxed)
            counters.dropped(.ioError, messageDatagrams[m])
            if messageDatagrams[m] > 1 && descriptor != senderDescriptor
                && (outcome.error == EIO || outcome.error == ENOPROTOOPT || outcome.error == EOPNOTSUPP) {
                // The kernel does not segment here (no checksum offload on the
                // route, an IPsec one): one datagram per message from now on.
                // EINVAL is not that: a segment too long for the path's MTU,
                // which a datagram alone would be too (EMSGSIZE).
                segmentsRefused.store(true, ordering: .relaxed)
            }
            next = outcome.sent &+ 1
        }
    }
}
