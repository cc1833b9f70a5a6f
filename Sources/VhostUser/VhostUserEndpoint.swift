import Glibc
import Logging
import Model
import Platform

/// The socket side of one vhost-user device: in server mode Ferry listens and
/// takes one front-end at a time (a new one may come once the last has left);
/// in client mode Ferry connects, retries with backoff, and reconnects when
/// the front-end goes away. Runs on the control thread; never blocks on a peer.
public final class VhostUserEndpoint: @unchecked Sendable {
    public enum Mode: Sendable, Equatable { case server, client }

    public let path: String
    public let mode: Mode
    public let device: VhostDevice
    let logger: Logger

    /// The server socket (server mode), and the front-end's connection while one is attached.
    private let socket: VhostUserSocket
    private var connection: DescriptorSlot { socket.connection }
    private var decoder = MessageDecoder()
    /// Where we are in the current message: its header bytes so far, and the
    /// payload bytes still to read. Reads never cross a message boundary: a
    /// recvmsg may join one message's bytes to the next's, and the descriptors
    /// riding on the second would then seem to belong to the first.
    private var header: [UInt8] = []
    private var payloadLeft = 0
    private let receiveBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8192, alignment: 8)

    public static let maxBackoff = VhostUserSocket.maxBackoff

    /// `permissions`: the server socket's owner, group and mode (a client connects
    /// to the front-end's socket, which is the front-end's to set). A server
    /// socket that cannot be made throws as `UnixSocket.listen` does.
    public init(path: String, mode: Mode, device: VhostDevice, logger: Logger,
                permissions: SocketPermissions.Resolved? = nil) throws {
        precondition(mode == .server || permissions == nil, "socket permissions apply to a server socket only")
        self.path = path
        self.mode = mode
        self.device = device
        self.logger = logger
        socket = try VhostUserSocket(path: path, listening: mode == .server, permissions: permissions,
                                     owner: "vhost-user \(device.name)", peer: "front-end", logger: logger)
    }

    deinit { receiveBuffer.deallocate() }

    public var isConnected: Bool { !connection.isEmpty }

    /// Stops serving: drops the front-end, closes the listener and removes the
    /// socket file of a server. The data path must no longer use the device.
    public func shutDown(_ why: String) {
        disconnect(why)
        socket.stopListening()
    }

    /// Descriptors the control loop should wait on for this endpoint.
    public var pollDescriptors: [Int32] { socket.pollDescriptors }

    /// Seconds until this endpoint wants `service` called even without input.
    public func timeout(now: Double) -> Double? { socket.timeout(now: now) }

    /// Does whatever is due: accept, connect, read and answer messages.
    public func service(now: Double) {
        if socket.connectIfDue(now: now) { adopted() }
        if !connection.isEmpty {
            readMessages()
            device.checkHealth(now: now)
        }
    }

    /// A new front-end: its messages start afresh.
    private func adopted() {
        decoder = MessageDecoder()
        header = []
        payloadLeft = 0
    }

    /// A second front-end on a busy server socket is turned away, not queued forever.
    public func rejectExtraConnections() { socket.turnAwayExtraPeers() }

    private func readMessages() {
        let fd = connection.rawValue
        guard fd >= 0 else { return }
        while true {
            let want = header.count < VhostUserHeader.size ? VhostUserHeader.size - header.count : payloadLeft
            let received: UnixSocket.Received?
            do {
                received = try UnixSocket.receive(fd, into: UnsafeMutableRawBufferPointer(rebasing: receiveBuffer[0..<want]),
                                                  nonBlocking: true)
            } catch {
                disconnect("read failed: \(error)")
                return
            }
            guard let r = received else { return }
            if r.count == 0 {
                disconnect("front-end closed the connection")
                return
            }
            let chunk = UnsafeRawBufferPointer(rebasing: receiveBuffer[0..<r.count])
            if header.count < VhostUserHeader.size {
                header.append(contentsOf: chunk)
                if header.count == VhostUserHeader.size {
                    // SAFETY: header.count == VhostUserHeader.size (12, tested just above): bytes 8..11
                    // are there.
                    let size = header.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
                    // An oversized size is the decoder's to refuse; read no payload for it.
                    payloadLeft = size <= UInt32(VhostUserHeader.maxPayloadSize) ? Int(size) : 0
                }
            } else {
                payloadLeft -= r.count
            }
            if header.count == VhostUserHeader.size && payloadLeft == 0 { header = [] }
            decoder.feed(chunk, descriptors: r.fds, descriptorsTruncated: r.truncated)
            while let result = decoder.next() {
                let outcome: VhostDevice.Outcome
                switch result {
                case .success(let message): outcome = device.handle(message)
                case .failure(let error): outcome = device.refused(error)
                }
                switch outcome {
                case .none: break
                case .reply(let bytes):
                    do { try UnixSocket.send(fd, bytes: bytes) } catch {
                        disconnect("reply failed: \(error)")
                        return
                    }
                case .close(let why):
                    disconnect("closing: \(why)")
                    return
                }
            }
        }
    }

    /// Drops the connection and resets the device; a server waits for the next
    /// front-end, a client starts reconnecting.
    public func disconnect(_ why: String) {
        guard !connection.isEmpty else { return }
        socket.disconnect(backingOff: false, now: 0)
        logger.info("vhost-user \(device.name): front-end gone (\(why))")
        device.reset(reason: "front-end disconnected")
    }
}
