import Glibc
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
/// (a source port hashed from the inner flow, checksum zero over IPv4) and
/// the VXLAN header; the kernel adds the IP header and routes it.
///
/// Sending: a frame whose destination the forwarding database learned behind
/// one VTEP (the batch's tunnel endpoint) goes to that VTEP; any other
/// (broadcast, multicast, unknown unicast) to every VTEP of `remote=`, one
/// datagram each from the same buffer (head-end replication). A frame too
/// long for the underlay's MTU (`maxInnerFrameLength`) is dropped as
/// `too_long`: VTEPs never fragment (RFC 7348 §4.3).
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
    public let counters = [QueueCounters()]
    public var queueCount: Int { 1 }

    let receiver: FileDescriptor
    let sender: FileDescriptor
    @usableFromInline let receiverDescriptor: Int32
    @usableFromInline let senderDescriptor: Int32
    @usableFromInline let received: DatagramBatch
    @usableFromInline let receiveBuffers: UnsafeMutableRawPointer
    @usableFromInline let receiveSlots: Int
    @usableFromInline let outgoing: DatagramBatch
    @usableFromInline let sendBuffers: UnsafeMutableRawPointer
    @usableFromInline let sendSlots: Int
    /// Per outgoing message: the VTEP number it goes to, and its inner frame's length.
    @usableFromInline let messageEndpoints: UnsafeMutablePointer<UInt16>
    @usableFromInline let messageLengths: UnsafeMutablePointer<Int>
    @usableFromInline let maxInnerFrameLengthValue: Atomic<Int>
    @usableFromInline let lastErrorCode = Atomic<Int32>(0)

    /// A received datagram's buffer: the longest inner frame a 9000-byte
    /// jumbo underlay carries, and more; a longer datagram is cut by the
    /// kernel and dropped as `rx_buffer_too_small`.
    public static let receiveSlotSize = 16 * 1024
    /// An outgoing datagram's buffer: UDP and VXLAN headers, then the frame.
    public static let sendSlotSize = 16 * 1024
    /// Datagrams one `sendmmsg` may carry (a burst times the flood list, in rounds).
    public static let messagesPerSend = 1024
    @usableFromInline static var encapsulation: Int { VXLAN.udpHeaderSize &+ VXLAN.headerSize }

    /// Opens the underlay sockets for VNI `vni` on `local`:`udpPort`, with
    /// `remotes` as the flood list (none: every sender accepted, unless `evpn`
    /// names the kernel devices FRR fills), taking bursts of up to `batchCapacity` frames.
    public init(vni: UInt32, local: InternetAddress, remotes: [InternetAddress], udpPort: UInt16,
                evpn: EvpnDevices? = nil, batchCapacity: Int) throws {
        guard PortLimits.vxlanVNIs.contains(vni) else { throw InvalidArgument("vxlan: VNI \(vni) is not 24 bits") }
        guard remotes.allSatisfy({ $0.isIPv6 == local.isIPv6 }) else {
            throw InvalidArgument("vxlan: remote VTEPs must be of the local address's family (\(local))")
        }
        self.vni = vni
        self.local = local
        self.udpPort = udpPort
        endpoints = TunnelEndpoints(remotes: remotes, ipv6: local.isIPv6)
        acceptsAnySender = remotes.isEmpty && evpn == nil
        self.evpn = evpn
        kernelFDB = try evpn.map { try KernelBridgeFDB(devices: $0) }
        underlayInterface = NetworkInterface.name(holding: local)
        let mtu = try underlayInterface.map { try NetworkInterface.mtu(of: $0) } ?? 1500
        maxInnerFrameLengthValue = Atomic(Self.innerFrameLimit(mtu: mtu, ipv6: local.isIPv6))
        receiver = try TunnelSockets.receiver(local: local, port: udpPort, receiveBuffer: 4 << 20)
        sender = try TunnelSockets.sender(local: local, sendBuffer: 4 << 20)
        receiverDescriptor = receiver.rawValue
        senderDescriptor = sender.rawValue
        receiveSlots = batchCapacity
        received = DatagramBatch(capacity: batchCapacity)
        receiveBuffers = .allocate(byteCount: batchCapacity * Self.receiveSlotSize, alignment: 64)
        sendSlots = batchCapacity
        outgoing = DatagramBatch(capacity: Self.messagesPerSend)
        sendBuffers = .allocate(byteCount: batchCapacity * Self.sendSlotSize, alignment: 64)
        messageEndpoints = .allocate(capacity: Self.messagesPerSend)
        messageEndpoints.initialize(repeating: 0, count: Self.messagesPerSend)
        messageLengths = .allocate(capacity: Self.messagesPerSend)
        messageLengths.initialize(repeating: 0, count: Self.messagesPerSend)
    }

    deinit {
        receiveBuffers.deallocate()
        sendBuffers.deallocate()
        messageEndpoints.deallocate()
        messageLengths.deallocate()
    }

    /// One line for the log at creation.
    public var summary: String {
        let remotes = acceptsAnySender ? "any sender"
            : evpn != nil ? "from EVPN (\(evpn!.vxlanDevice), local MACs on \(evpn!.bridgePort))"
            : (1...endpoints.count).map { "\(endpoints.address($0))" }.joined(separator: "+")
        return "vxlan VNI \(vni): \(local) UDP \(udpPort), remote VTEPs \(remotes), inner frames up to "
            + "\(maxInnerFrameLength) bytes (underlay \(underlayInterface ?? "interface not found"))"
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
        guard let name = underlayInterface, let mtu = try? NetworkInterface.mtu(of: name) else { return }
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
        let counters = self.counters[0]
        var budget = min(batch.room, receiveSlots)
        if budget > batch.freeSegments { budget = batch.freeSegments }
        if budget == 0 { return 0 }
        var i = 0
        while i < budget {
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
        var frames = 0
        var bytes: UInt64 = 0
        var lastAddress = InternetAddress(ipv4NetworkOrder: 0)
        var lastNumber: UInt16 = 0
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
            var number = lastNumber != 0 && senderAddress == lastAddress ? lastNumber : endpoints.number(of: senderAddress)
            if number == 0 && acceptsAnySender { number = endpoints.append(senderAddress) }
            if number == 0 {
                counters.dropped(.vxlanUnknownVTEP)
                continue
            }
            lastAddress = senderAddress
            lastNumber = number
            let datagram = receiveBuffers + d &* Self.receiveSlotSize
            switch VXLAN.innerFrame(of: datagram, length: received.receivedLength(d), vni: vni) {
            case .failure(.truncated):
                counters.dropped(.vxlanTruncated)
            case .failure(.validFlagClear):
                counters.dropped(.vxlanFlagClear)
            case .failure(.unknownVNI):
                counters.dropped(.vxlanUnknownVNI)
            case .success(let inner):
                let header = batch.header(batch.count)
                header.storeBytes(of: 0, as: UInt64.self)
                header.storeBytes(of: 0, toByteOffset: 8, as: UInt32.self)
                batch.setTunnelEndpoint(batch.count, number)
                batch.append(base: datagram + inner.offset, length: UInt32(truncatingIfNeeded: inner.length),
                             token: UInt32(truncatingIfNeeded: d))
                endpoints.received(from: Int(number), bytes: inner.length)
                frames &+= 1
                bytes &+= UInt64(inner.length)
            }
        }
        if frames > 0 { counters.received(packets: frames, bytes: bytes) }
        return arrived
    }

    /// The frames were copied on; their buffers are reused by the next pull.
    @inlinable
    public func release(queue _: Int) {}

    /// Encapsulates every frame of `batch` and sends the datagrams: to the
    /// frame's VTEP, or to every VTEP of the flood list.
    @inlinable
    public func push(queue _: Int, from batch: PacketBatch) {
        let counters = self.counters[0]
        let limit = maxInnerFrameLength
        let known = endpoints.count
        let floodCount = endpoints.floodCount
        let portBytes = udpPort.bigEndian
        var messages = 0
        var slot = 0
        let count = batch.count
        var f = 0
        while f < count {
            let frame = f
            f &+= 1
            if slot == sendSlots || messages &+ max(known, 1) > Self.messagesPerSend {
                flush(messages, counters: counters)
                messages = 0
                slot = 0
            }
            let length = batch.length(of: frame)
            if length > limit {
                counters.dropped(.tooLong)
                continue
            }
            let buffer = sendBuffers + slot &* Self.sendSlotSize
            let inner = buffer + Self.encapsulation
            if let refused = batch.gather(frame, into: inner, limit: Self.sendSlotSize &- Self.encapsulation,
                                          untaggedLimit: limit) {
                counters.dropped(refused)
                continue
            }
            let target = Int(batch.tunnelEndpoint(of: frame))
            let first: Int
            let last: Int
            let flood: Bool
            if target != 0 && target <= known {
                first = target
                last = target
                flood = false
            } else if floodCount > 0 {
                // The flood list's members among every VTEP (an EVPN port's list changes with type-3 routes).
                first = 1
                last = known
                flood = true
            } else {
                counters.dropped(.noDestination)
                continue
            }
            slot &+= 1
            let datagramLength = Self.encapsulation &+ length
            // UDP: source port from the inner flow, destination, length, checksum
            // (zero: none over IPv4; the kernel's over IPv6).
            buffer.storeBytes(of: VXLAN.sourcePort(frame: inner, length: length).bigEndian, as: UInt16.self)
            buffer.storeBytes(of: portBytes, toByteOffset: 2, as: UInt16.self)
            buffer.storeBytes(of: UInt16(truncatingIfNeeded: datagramLength).bigEndian, toByteOffset: 4, as: UInt16.self)
            buffer.storeBytes(of: 0, toByteOffset: 6, as: UInt16.self)
            VXLAN.writeHeader(vni: vni, at: buffer + VXLAN.udpHeaderSize)
            var e = first
            while e <= last {
                if flood && !endpoints.floods(e) {
                    e &+= 1
                    continue
                }
                outgoing.prepareSend(messages, from: buffer, length: datagramLength, to: endpoints.socketAddress(e),
                                     nameLength: endpoints.socketAddressLength)
                messageEndpoints[messages] = UInt16(truncatingIfNeeded: e)
                messageLengths[messages] = length
                messages &+= 1
                e &+= 1
            }
        }
        if messages > 0 { flush(messages, counters: counters) }
    }

    /// Sends the prepared messages; counts what went (per port and per VTEP) and what did not.
    @inlinable
    func flush(_ messages: Int, counters: QueueCounters) {
        var next = 0
        var sentBytes: UInt64 = 0
        var sent = 0
        while next < messages {
            let outcome = outgoing.send(on: senderDescriptor, from: next, count: messages)
            var m = next
            while m < outcome.sent {
                endpoints.sent(to: Int(messageEndpoints[m]), bytes: messageLengths[m])
                sentBytes &+= UInt64(messageLengths[m])
                m &+= 1
            }
            sent &+= outcome.sent &- next
            if outcome.error == 0 { break }
            if outcome.error == EAGAIN || outcome.error == ENOBUFS {
                // The send buffer is full: nothing more goes in this burst.
                counters.dropped(.txFull, messages &- outcome.sent)
                break
            }
            // This datagram cannot go (no route, too long for the path...): the rest may.
            lastErrorCode.store(outcome.error, ordering: .relaxed)
            counters.dropped(.ioError)
            next = outcome.sent &+ 1
        }
        if sent > 0 { counters.sent(packets: sent, bytes: sentBytes) }
    }
}
