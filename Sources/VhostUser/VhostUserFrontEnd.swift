import Glibc
import Logging
import Platform
import Virtio

/// What a front-end hands a back-end: its memory (one region, with the descriptor that
/// maps it) and its rings, each with the kick and call eventfds that go with it.
public struct FrontEndSetup {
    public struct Ring {
        public var index: UInt32
        public var size: UInt16
        /// Where the ring's three parts are in the front-end's address space (and, with
        /// the region mapped at the same addresses, in guest-physical space).
        public var descAddress: UInt64
        public var availAddress: UInt64
        public var usedAddress: UInt64
        public var kickFD: Int32
        public var callFD: Int32

        public init(index: UInt32, size: UInt16, descAddress: UInt64, availAddress: UInt64, usedAddress: UInt64,
                    kickFD: Int32, callFD: Int32) {
            self.index = index
            self.size = size
            self.descAddress = descAddress
            self.availAddress = availAddress
            self.usedAddress = usedAddress
            self.kickFD = kickFD
            self.callFD = callFD
        }
    }

    public var region: MemoryRegionInfo
    public var memoryFD: Int32
    public var rings: [Ring]
    /// Device features the driver can use; VERSION_1 is required of the back-end, the rest taken if offered.
    public var features: VirtioNetFeatures

    public init(region: MemoryRegionInfo, memoryFD: Int32, rings: [Ring], features: VirtioNetFeatures) {
        self.region = region
        self.memoryFD = memoryFD
        self.rings = rings
        self.features = features
    }
}

/// The front-end's side of one vhost-user connection, as a guest's driver would hold it
/// (QEMU's or DPDK's virtio-user): connects to a back-end's socket (or listens for one),
/// negotiates, hands over memory and rings, and tells its owner when the rings may run and
/// when they must stop. Runs on the control thread and never blocks on the back-end.
///
/// The back-end is as untrusted as a front-end is to Ferry's vhost ports: every reply is
/// decoded by the same `MessageDecoder` (as `.frontEnd`), must answer the request at the
/// head of the queue of those awaiting one, and an acknowledgement (REPLY_ACK, asked for on
/// every set-up message when the back-end offers it) must be 0. Anything else closes the
/// connection with one log line; a client then connects again after a backoff.
public final class VhostUserFrontEnd: @unchecked Sendable {
    public enum Mode: Sendable, Equatable { case client, server }

    /// Where a connection is.
    public enum Phase: Equatable, Sendable {
        case disconnected
        case negotiating
        /// Set-up sent; the rings run (with REPLY_ACK: every acknowledgement came back 0).
        case running
    }

    public let path: String
    public let mode: Mode
    public let name: String
    let setup: FrontEndSetup
    let logger: Logger
    /// Called on the control thread: the rings may run with these negotiated features.
    private let started: (VirtioNetFeatures) -> Void
    /// Called on the control thread when the back-end is gone: the rings must stop and start afresh.
    private let stopped: () -> Void

    public private(set) var phase = Phase.disconnected
    public private(set) var negotiated: VirtioNetFeatures = []
    /// Why the last connection ended, for `ferry ctl show ports`.
    public private(set) var lastFailure: String?
    private let socket: VhostUserSocket
    private var connection: DescriptorSlot { socket.connection }
    private var decoder = MessageDecoder(role: .frontEnd)
    /// Requests sent that a reply must answer, in order.
    private var awaiting: [VhostUserRequest] = []
    private var acknowledged = false
    private var receiveBuffer = [UInt8](repeating: 0, count: 4096)

    /// How long a back-end may take to answer the set-up before the connection is given up.
    public let replyTimeout: Double
    private var negotiationDeadline: Double = 0
    /// The protocol features a front-end takes when offered: acknowledgements only.
    public static let wantedProtocolFeatures: VhostUserProtocolFeatures = [.replyAck]

    public init(path: String, mode: Mode, name: String, setup: FrontEndSetup, logger: Logger,
                replyTimeout: Double = 5, started: @escaping (VirtioNetFeatures) -> Void,
                stopped: @escaping () -> Void) throws {
        self.replyTimeout = replyTimeout
        self.path = path
        self.mode = mode
        self.name = name
        self.setup = setup
        self.logger = logger
        self.started = started
        self.stopped = stopped
        socket = try VhostUserSocket(path: path, listening: mode == .server, owner: "virtio-user \(name)",
                                     peer: "back-end", logger: logger)
    }

    public var isConnected: Bool { socket.isConnected }

    public var pollDescriptors: [Int32] { socket.pollDescriptors }

    public func timeout(now: Double) -> Double? {
        if phase == .negotiating { return max(0, negotiationDeadline - now) }
        return socket.timeout(now: now)
    }

    public func service(now: Double) {
        if socket.connectIfDue(now: now) { begin() }
        if !connection.isEmpty { readReplies() }
        if phase == .negotiating && now >= negotiationDeadline {
            fail("no reply to \(awaiting.first?.specName ?? "the set-up") within \(replyTimeout) s")
        }
    }

    /// Drops the back-end; the rings stop. `why` goes to the log.
    public func shutDown(_ why: String) {
        disconnect(why)
        socket.stopListening()
    }

    /// A new connection: the set-up starts with SET_OWNER and GET_FEATURES.
    private func begin() {
        decoder = MessageDecoder(role: .frontEnd)
        awaiting = []
        acknowledged = false
        negotiated = []
        phase = .negotiating
        negotiationDeadline = MonotonicClock.now() + replyTimeout
        send(.setOwner)
        send(.getFeatures, awaitingReply: true)
    }

    // MARK: Messages

    private func send(_ request: VhostUserRequest, _ payload: VhostUserMessage.Payload = .none, fds: [Int32] = [],
                      awaitingReply: Bool = false) {
        guard !connection.isEmpty else { return }
        // A set-up message asks for an acknowledgement once the back-end agreed to give them.
        let ask = acknowledged && !awaitingReply
        do {
            try UnixSocket.send(connection.rawValue,
                                bytes: MessageEncoder.request(request, payload: payload, needReply: ask), fds: fds)
            if awaitingReply || ask { awaiting.append(request) }
        } catch {
            fail("sending \(request.specName) failed: \(error)")
        }
    }

    private func readReplies() {
        while !connection.isEmpty {
            let fd = connection.rawValue
            let result = receiveBuffer.withUnsafeMutableBytes { buffer in
                Result { () throws(SystemError) in try UnixSocket.receive(fd, into: buffer, nonBlocking: true) }
            }
            let received: UnixSocket.Received?
            switch result {
            case .success(let r): received = r
            case .failure(let error):
                fail("read failed: \(error)")
                return
            }
            guard let r = received else { return }
            if r.count == 0 {
                lastFailure = "back-end closed the connection"
                disconnect("closed by the back-end")
                return
            }
            receiveBuffer.withUnsafeBytes { decoder.feed(UnsafeRawBufferPointer(rebasing: $0[0..<r.count]),
                                                         descriptors: r.fds, descriptorsTruncated: r.truncated) }
            while !connection.isEmpty, let result = decoder.next() {
                switch result {
                case .success(let reply): answer(reply)
                case .failure(let error): fail("bad reply: \(error)")
                }
            }
        }
    }

    /// One checked reply: it must answer the oldest request still awaiting one.
    private func answer(_ reply: VhostUserMessage) {
        guard let expected = awaiting.first else {
            fail("a reply to \(reply.request.specName) that nothing asked for")
            return
        }
        guard reply.request == expected else {
            fail("a reply to \(reply.request.specName) where one to \(expected.specName) was due")
            return
        }
        awaiting.removeFirst()
        guard case .u64(let value) = reply.payload else {
            fail("a reply to \(expected.specName) without its u64")
            return
        }
        switch expected {
        case .getFeatures:
            let offered = VirtioNetFeatures(rawValue: value)
            guard offered.contains(.version1) else {
                fail("the back-end does not offer VIRTIO_F_VERSION_1 (features 0x\(String(value, radix: 16)))")
                return
            }
            negotiated = offered.intersection(setup.features.union([.version1, .protocolFeatures]))
            if negotiated.contains(.protocolFeatures) {
                send(.getProtocolFeatures, awaitingReply: true)
            } else {
                sendSetup()
            }
        case .getProtocolFeatures:
            let agreed = VhostUserProtocolFeatures(rawValue: value).intersection(Self.wantedProtocolFeatures)
            send(.setProtocolFeatures, .u64(agreed.rawValue))
            acknowledged = agreed.contains(.replyAck)
            sendSetup()
        default:
            guard value == 0 else {
                fail("the back-end refused \(expected.specName) (status \(value))")
                return
            }
            if awaiting.isEmpty { run() }
        }
    }

    /// Features, memory, then each ring: call, size, base, addresses, kick; then each ring enabled.
    private func sendSetup() {
        send(.setFeatures, .u64(negotiated.rawValue))
        send(.setMemTable, .memoryTable([setup.region]), fds: [setup.memoryFD])
        for ring in setup.rings {
            send(.setVringCall, .vringFile(index: ring.index, hasFD: true), fds: [ring.callFD])
            send(.setVringNum, .vringState(index: ring.index, num: UInt32(ring.size)))
            send(.setVringBase, .vringState(index: ring.index, num: 0))
            send(.setVringAddr, .vringAddress(VringAddress(
                index: ring.index, flags: 0, descUserAddr: ring.descAddress, usedUserAddr: ring.usedAddress,
                availUserAddr: ring.availAddress, logGuestAddr: 0)))
            send(.setVringKick, .vringFile(index: ring.index, hasFD: true), fds: [ring.kickFD])
        }
        // Without PROTOCOL_FEATURES a ring is enabled by its kick descriptor.
        if negotiated.contains(.protocolFeatures) {
            for ring in setup.rings { send(.setVringEnable, .vringState(index: ring.index, num: 1)) }
        }
        if awaiting.isEmpty && !connection.isEmpty { run() }
    }

    private func run() {
        phase = .running
        lastFailure = nil
        socket.connectionWorked()
        let acks = acknowledged ? ", every set-up message acknowledged" : ""
        logger.info("virtio-user \(name): running, features 0x\(String(negotiated.rawValue, radix: 16))\(acks)")
        started(negotiated)
    }

    private func fail(_ why: String) {
        logger.error("virtio-user \(name): \(why); closing the connection")
        lastFailure = why
        disconnect(why)
    }

    private func disconnect(_ why: String) {
        guard !connection.isEmpty else { return }
        socket.disconnect(backingOff: true, now: MonotonicClock.now())
        awaiting = []
        phase = .disconnected
        stopped()
        logger.info("virtio-user \(name): back-end gone (\(why))")
    }
}
