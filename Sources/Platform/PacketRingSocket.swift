import CFerry
import Glibc

/// An AF_PACKET socket (packet(7)) bound to one existing interface, whose
/// frames pass through rings mapped into both Ferry and the kernel
/// (Documentation/networking/packet_mmap.rst): receiving walks the receive
/// ring without a syscall, transmitting fills slots of the transmit ring and
/// hands a whole burst over with one `sendto`.
///
/// Both rings are TPACKET_V3. The receive ring is why: V3 packs frames into
/// large blocks back to back, so small frames do not each waste a fixed slot,
/// and the kernel hands over a block at a time (PACKET_VERSION is one setting
/// for the socket, so the transmit ring is V3 too; its slots are fixed-size
/// like V2's, which the kernel has supported since 4.11).
///
/// With `virtioNetHeaders` (PACKET_VNET_HDR) every frame travels with a
/// 10-byte virtio-net header, both ways: the kernel says which received frames
/// carry a partial checksum or are GRO'd super-frames, and takes partial
/// checksums and GSO super-frames to transmit, finishing or segmenting them
/// itself (or leaving it to the driver). Both ring versions carry it since
/// Linux 4.11 (tpacket_rcv writes it right before the frame, tpacket_snd reads
/// it at the start of the slot's data).
///
/// Receiving (PacketRingSocket+Receive.swift) and transmitting
/// (PacketRingSocket+Transmit.swift) may run on two threads, one each.
public final class PacketRingSocket: @unchecked Sendable {
    /// The receive ring: `blockCount` blocks of `blockSize` bytes. The kernel
    /// fills a block with frames and hands it over when it is full or
    /// `retireTimeoutMilliseconds` after its first frame, so a lone frame
    /// waits at most that long.
    public struct ReceiveRing: Equatable, Sendable {
        /// A multiple of the page size, at least `frameSizeLimit`.
        public var blockSize: Int
        public var blockCount: Int
        /// The most one frame takes in a block, its ring header included
        /// (tp_frame_size): a longer frame is cut, and its snap length shows it.
        public var frameSizeLimit: Int
        public var retireTimeoutMilliseconds: Int

        public init(blockSize: Int, blockCount: Int, frameSizeLimit: Int, retireTimeoutMilliseconds: Int) {
            self.blockSize = blockSize
            self.blockCount = blockCount
            self.frameSizeLimit = frameSizeLimit
            self.retireTimeoutMilliseconds = retireTimeoutMilliseconds
        }

        /// 4 MiB: 16 blocks of 256 KiB (about 170 full-size frames each), room
        /// for a 9000-byte MTU's frames, 1 ms until a partly filled block goes.
        public static let standard = ReceiveRing(blockSize: 256 << 10, blockCount: 16, frameSizeLimit: 16 << 10,
                                                 retireTimeoutMilliseconds: 1)
    }

    /// The transmit ring: `slotCount` slots of `slotSize` bytes, one frame each.
    public struct TransmitRing: Equatable, Sendable {
        /// A power of two from 128 to 65536; the frame gets `slotSize - frameOffset` bytes of it.
        public var slotSize: Int
        public var slotCount: Int

        public init(slotSize: Int, slotCount: Int) {
            self.slotSize = slotSize
            self.slotCount = slotCount
        }

        /// 1024 slots, each the smallest power of two (at least 2 KiB) that
        /// holds a frame of `mtu` with its Ethernet header and an 802.1Q tag
        /// (and a virtio-net header).
        public static func standard(mtu: Int) -> TransmitRing {
            var size = 2048
            while size < PacketRingSocket.transmitFrameOffset + PacketRingSocket.virtioNetHeaderSize + mtu + 18
                && size < 65536 { size <<= 1 }
            return TransmitRing(slotSize: size, slotCount: 1024)
        }

        /// 256 slots of 128 KiB: each holds a GSO super-frame (an IP datagram of
        /// up to 65535 bytes, its Ethernet header and a tag) behind the slot's
        /// headers. A slot takes one frame whatever its size (V3 transmit slots
        /// are fixed), so this ring is 32 MiB where `standard` is 2 MiB; 256 is
        /// the longest burst a worker pushes.
        public static let superFrames = TransmitRing(slotSize: 128 << 10, slotCount: 256)
    }

    /// PACKET_FANOUT in hash mode: the kernel spreads frames over a group of
    /// sockets by flow, each frame to exactly one of them.
    public enum Fanout: Equatable, Sendable {
        case none
        /// A new group whose id the kernel picks (PACKET_FANOUT_FLAG_UNIQUEID),
        /// so no other socket of this or another process joins it by accident;
        /// `fanoutGroup` tells the id for the others to `join`.
        case newGroup
        case join(UInt16)
    }

    public struct Options: Sendable {
        /// nil: no receive ring (the socket then receives nothing worth reading).
        public var receiveRing: ReceiveRing?
        /// nil: no transmit ring; the socket only receives.
        public var transmitRing: TransmitRing?
        /// Join the interface's promiscuous users (PACKET_MR_PROMISC) while the socket is open.
        public var promiscuous: Bool
        /// Leave out frames the host itself transmits on the interface, ours
        /// included (PACKET_IGNORE_OUTGOING).
        public var ignoreOutgoing: Bool
        /// Transmit straight to the driver, past the qdisc layer (PACKET_QDISC_BYPASS).
        public var qdiscBypass: Bool
        public var fanout: Fanout
        /// Receive only what this classic BPF program accepts (SO_ATTACH_FILTER).
        public var filter: PacketFilter?
        /// A virtio-net header before every frame, received and transmitted (PACKET_VNET_HDR).
        public var virtioNetHeaders: Bool

        public init(receiveRing: ReceiveRing? = .standard, transmitRing: TransmitRing? = nil, promiscuous: Bool = false,
                    ignoreOutgoing: Bool = true, qdiscBypass: Bool = false, fanout: Fanout = .none,
                    filter: PacketFilter? = nil, virtioNetHeaders: Bool = false) {
            self.receiveRing = receiveRing
            self.transmitRing = transmitRing
            self.promiscuous = promiscuous
            self.ignoreOutgoing = ignoreOutgoing
            self.qdiscBypass = qdiscBypass
            self.fanout = fanout
            self.filter = filter
            self.virtioNetHeaders = virtioNetHeaders
        }
    }

    /// ETH_P_ALL (<linux/if_ether.h>), in network byte order: every protocol.
    static let allProtocols = UInt16(0x0003).bigEndian
    /// Where a frame starts in a transmit slot: after the V3 frame header, where
    /// tpacket_parse_header looks when no data offset is given (TPACKET3_HDRLEN
    /// minus the sockaddr_ll the kernel counts in it).
    public static let transmitFrameOffset = Int(FERRY_TPACKET3_HDRLEN) - MemoryLayout<sockaddr_ll>.size
    /// sizeof(struct virtio_net_hdr): what PACKET_VNET_HDR puts before each frame
    /// (af_packet.c; the 12-byte form needs PACKET_VNET_HDR_SZ, Linux 6.2).
    public static let virtioNetHeaderSize = 10

    public let interface: String
    public let interfaceIndex: UInt32
    public let fd: Int32
    /// Owns `fd`; closed first in deinit.
    private let ownedDescriptor: DescriptorSlot
    public let options: Options
    /// Bytes of virtio-net header before each frame: 10 with `virtioNetHeaders`, else 0.
    public let headerSize: Int
    /// The fanout group this socket is in, nil without fanout.
    public let fanoutGroup: UInt16?

    @usableFromInline let mapping: MemoryMapping?

    // Receive ring (PacketRingSocket+Receive.swift); one reader at a time.
    @usableFromInline let receiveBase: UnsafeMutableRawPointer?
    @usableFromInline let blockSize: Int
    @usableFromInline let blockCount: Int
    /// The block being walked, its frames not handed out yet, the next one's header.
    @usableFromInline var currentBlock = 0
    @usableFromInline var framesLeftInBlock = 0
    @usableFromInline var nextFrameHeader: UnsafeMutableRawPointer?
    /// Blocks every frame of which was handed out and that are not given back
    /// yet, oldest first from `firstHeldBlock`.
    @usableFromInline var consumedBlocks = 0
    @usableFromInline var firstHeldBlock = 0

    // Transmit ring (PacketRingSocket+Transmit.swift); one writer at a time.
    @usableFromInline let transmitBase: UnsafeMutableRawPointer?
    @usableFromInline let slotSize: Int
    @usableFromInline let slotCount: Int
    /// The next slot to fill, and how many were filled since the last flush.
    @usableFromInline var transmitHead = 0
    @usableFromInline var transmitPending = 0

    /// Opens a packet socket on existing interface `interface` with `options`.
    /// Nothing is received before the rings, the filter and the options are in
    /// place: the socket listens to no protocol until it is bound, last. Rings
    /// the kernel would refuse, or a name that cannot be an interface's, are an
    /// `InvalidArgument`; a failed call (no such interface: ENODEV) a `SystemError`.
    public init(interface: String, options: Options) throws {
        let index = try NetworkInterface.index(of: interface)
        if let rx = options.receiveRing { try Self.check(rx, interface) }
        if let tx = options.transmitRing { try Self.check(tx, interface) }
        let raw: Int32
        do throws(SystemError) {
            raw = try syscall("socket(AF_PACKET) for \(interface)") {
                socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            }
        } catch {
            guard error.errno == EPERM else { throw error }
            throw SystemError("socket(AF_PACKET) for \(interface): a packet socket needs CAP_NET_RAW", errno: EPERM)
        }
        let owned = FileDescriptor(owning: raw)
        let name = "packet \(interface)"
        try Self.set(raw, SOL_PACKET, PACKET_VERSION, Int32(FERRY_TPACKET_V3), "\(name): PACKET_VERSION(TPACKET_V3)")
        if options.ignoreOutgoing {
            try Self.set(raw, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1, "\(name): PACKET_IGNORE_OUTGOING")
        }
        if options.qdiscBypass {
            try Self.set(raw, SOL_PACKET, PACKET_QDISC_BYPASS, 1, "\(name): PACKET_QDISC_BYPASS")
        }
        if let filter = options.filter { try filter.attach(to: raw, name) }
        if options.virtioNetHeaders {
            // Before the rings: packet_setsockopt refuses it (EBUSY) once either exists,
            // since the ring's frame layout depends on it.
            try Self.set(raw, SOL_PACKET, PACKET_VNET_HDR, 1, "\(name): PACKET_VNET_HDR")
        }
        if options.transmitRing != nil {
            // A malformed slot is skipped and freed rather than stopping the
            // ring in TP_STATUS_WRONG_FORMAT until someone clears it. Like
            // every ring option, only before a ring exists (EBUSY after).
            try Self.set(raw, SOL_PACKET, PACKET_LOSS, 1, "\(name): PACKET_LOSS")
        }

        var receiveBytes = 0
        if let rx = options.receiveRing {
            var request = tpacket_req3()
            request.tp_block_size = UInt32(rx.blockSize)
            request.tp_block_nr = UInt32(rx.blockCount)
            request.tp_frame_size = UInt32(rx.frameSizeLimit)
            request.tp_frame_nr = UInt32(rx.blockSize / rx.frameSizeLimit * rx.blockCount)
            request.tp_retire_blk_tov = UInt32(rx.retireTimeoutMilliseconds)
            _ = try syscall("\(name): PACKET_RX_RING") {
                setsockopt(raw, SOL_PACKET, PACKET_RX_RING, &request, socklen_t(MemoryLayout<tpacket_req3>.size))
            }
            receiveBytes = rx.blockSize * rx.blockCount
        }
        var transmitBytes = 0
        if let tx = options.transmitRing {
            // Slots are addressed block by block; a block that is a whole number
            // of slots keeps them back to back in the mapping.
            let block = max(tx.slotSize, 64 << 10)
            var request = tpacket_req3()
            request.tp_block_size = UInt32(block)
            request.tp_block_nr = UInt32(tx.slotCount * tx.slotSize / block)
            request.tp_frame_size = UInt32(tx.slotSize)
            request.tp_frame_nr = UInt32(tx.slotCount)
            _ = try syscall("\(name): PACKET_TX_RING") {
                setsockopt(raw, SOL_PACKET, PACKET_TX_RING, &request, socklen_t(MemoryLayout<tpacket_req3>.size))
            }
            transmitBytes = tx.slotSize * tx.slotCount
            // Each slot the kernel took is an skb charged to the send buffer
            // until the driver is done with it; a burst stops where the buffer
            // is full. Room for the whole ring, when root may say so.
            var bytes = Int32(clamping: transmitBytes)
            if setsockopt(raw, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, socklen_t(MemoryLayout<Int32>.size)) != 0 {
                _ = setsockopt(raw, SOL_SOCKET, SO_SNDBUF, &bytes, socklen_t(MemoryLayout<Int32>.size))
            }
        }
        // One mapping for both rings, the receive ring first (packet_mmap.rst).
        let mapping = receiveBytes + transmitBytes > 0
            ? try Self.map(raw, length: receiveBytes + transmitBytes, name) : nil

        var address = sockaddr_ll()
        address.sll_family = UInt16(AF_PACKET)
        address.sll_protocol = Self.allProtocols
        address.sll_ifindex = Int32(bitPattern: index)
        do throws(SystemError) {
            _ = try syscall("\(name): bind") {
                withUnsafePointer(to: &address) {
                    // SAFETY: sockaddr_ll starts with its family like every sockaddr; the kernel reads
                    // the sizeof(sockaddr_ll) bytes of `address` given as the length.
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        bind(raw, $0, socklen_t(MemoryLayout<sockaddr_ll>.size))
                    }
                }
            }
        } catch {
            guard error.errno == ENODEV else { throw error }
            throw SystemError("\(name): bind: the interface went away while the socket was set up", errno: ENODEV)
        }
        if options.promiscuous {
            // A membership, not IFF_PROMISC set by hand: the kernel counts the
            // interface's promiscuous users and drops ours when the socket
            // closes, however the process ends (kill -9 included), so a
            // crashed Ferry never leaves the interface promiscuous.
            var membership = packet_mreq()
            membership.mr_ifindex = Int32(bitPattern: index)
            membership.mr_type = UInt16(FERRY_PACKET_MR_PROMISC)
            _ = try syscall("\(name): PACKET_ADD_MEMBERSHIP(PACKET_MR_PROMISC)") {
                setsockopt(raw, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &membership, socklen_t(MemoryLayout<packet_mreq>.size))
            }
        }
        // Joining a group takes a bound socket (fanout_add checks po->running).
        switch options.fanout {
        case .none:
            fanoutGroup = nil
        case .newGroup:
            let unique = FERRY_PACKET_FANOUT_HASH | FERRY_PACKET_FANOUT_FLAG_UNIQUEID
            try Self.set(raw, SOL_PACKET, PACKET_FANOUT, unique << 16, "\(name): PACKET_FANOUT(hash, new group)")
            var value: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            _ = try syscall("\(name): getsockopt(PACKET_FANOUT)") {
                getsockopt(raw, SOL_PACKET, PACKET_FANOUT, &value, &size)
            }
            fanoutGroup = UInt16(truncatingIfNeeded: value)
        case .join(let group):
            try Self.set(raw, SOL_PACKET, PACKET_FANOUT, Int32(group) | FERRY_PACKET_FANOUT_HASH << 16,
                         "\(name): PACKET_FANOUT(hash, group \(group))")
            fanoutGroup = group
        }

        self.interface = interface
        self.interfaceIndex = index
        self.options = options
        headerSize = options.virtioNetHeaders ? Self.virtioNetHeaderSize : 0
        self.mapping = mapping
        receiveBase = receiveBytes > 0 ? mapping?.base : nil
        blockSize = options.receiveRing?.blockSize ?? 0
        blockCount = options.receiveRing?.blockCount ?? 0
        transmitBase = transmitBytes > 0 ? mapping.map { $0.base + receiveBytes } : nil
        slotSize = options.transmitRing?.slotSize ?? 0
        slotCount = options.transmitRing?.slotCount ?? 0
        fd = owned.rawValue
        ownedDescriptor = DescriptorSlot(owned)
    }

    /// The rings are unmapped after the socket closes: the kernel stops
    /// writing them first.
    deinit { ownedDescriptor.close() }

    /// The interface's MTU (SIOCGIFMTU, which any socket answers).
    public func interfaceMTU() throws -> Int {
        try NetworkInterface.mtu(of: interface)
    }

    /// Takes the error the kernel left on the socket (SO_ERROR, which clears
    /// it): ENETDOWN when the interface went down or away. Until taken it
    /// keeps `poll` reporting POLLERR; 0 when there was none.
    public func takePendingError() -> Int32 {
        var value: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        guard (try? syscall("getsockopt(SO_ERROR)", { getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &size) })) != nil else {
            return 0
        }
        return value
    }

    // MARK: Setup steps

    private static func check(_ rx: ReceiveRing, _ interface: String) throws(InvalidArgument) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard rx.blockSize > 0, rx.blockSize % page == 0, rx.blockCount > 0,
              rx.frameSizeLimit >= Int(FERRY_TPACKET3_HDRLEN) + 64, rx.frameSizeLimit % Int(FERRY_TPACKET_ALIGNMENT) == 0,
              rx.frameSizeLimit <= rx.blockSize, (1...1000).contains(rx.retireTimeoutMilliseconds),
              rx.blockSize * rx.blockCount <= 1 << 30
        else {
            throw InvalidArgument("packet \(interface): receive ring \(rx) (blocks a page multiple holding at least one "
                                  + "frame, at most 1 GiB in all, retire timeout 1...1000 ms)")
        }
    }

    private static func check(_ tx: TransmitRing, _ interface: String) throws(InvalidArgument) {
        guard (128...(128 << 10)).contains(tx.slotSize), tx.slotSize & (tx.slotSize - 1) == 0,
              tx.slotSize > transmitFrameOffset + 14, tx.slotCount > 0,
              tx.slotCount * tx.slotSize % max(tx.slotSize, 64 << 10) == 0, tx.slotCount * tx.slotSize <= 1 << 30
        else {
            throw InvalidArgument("packet \(interface): transmit ring \(tx) (slots a power of two 128...131072 bytes, "
                                  + "a whole number of 64 KiB in all, at most 1 GiB)")
        }
    }

    private static func set(_ fd: Int32, _ level: Int32, _ option: Int32, _ value: Int32, _ name: String)
        throws(SystemError)
    {
        var v = value
        _ = try syscall(name) { setsockopt(fd, level, option, &v, socklen_t(MemoryLayout<Int32>.size)) }
    }

    private static func map(_ fd: Int32, length: Int, _ name: String) throws(SystemError) -> MemoryMapping {
        do throws(SystemError) {
            return try MemoryMapping(fd: fd, length: length)
        } catch {
            throw SystemError("\(name): mmap of \(length) bytes of rings", errno: error.errno)
        }
    }
}
