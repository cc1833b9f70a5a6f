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
    private let listener = DescriptorSlot()
    private let connection = DescriptorSlot()
    private var decoder = MessageDecoder()
    /// Where we are in the current message: its header bytes so far, and the
    /// payload bytes still to read. Reads never cross a message boundary: a
    /// recvmsg may join one message's bytes to the next's, and the descriptors
    /// riding on the second would then seem to belong to the first.
    private var header: [UInt8] = []
    private var payloadLeft = 0
    private var nextAttempt: Double = 0
    private var backoff: Double = 0.1
    private var loggedWaiting = false
    private let receiveBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8192, alignment: 8)

    public static let maxBackoff = 2.0

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
        if mode == .server {
            let fd = try UnixSocket.listen(path: path, permissions: permissions)
            try fd.setNonBlocking()
            listener.replace(with: fd)
        }
    }

    deinit {
        receiveBuffer.deallocate()
        connection.close()
        listener.close()
        if mode == .server { unlink(path) }
    }

    public var isConnected: Bool { !connection.isEmpty }

    /// Stops serving: drops the front-end, closes the listener and removes the
    /// socket file of a server. The data path must no longer use the device.
    public func shutDown(_ why: String) {
        disconnect(why)
        if !listener.isEmpty {
            listener.close()
            unlink(path)
        }
    }

    /// Descriptors the control loop should wait on for this endpoint.
    public var pollDescriptors: [Int32] {
        var fds: [Int32] = []
        if !connection.isEmpty { fds.append(connection.rawValue) }
        // The listener stays watched while a front-end is attached, so a second one is turned away at once.
        if !listener.isEmpty { fds.append(listener.rawValue) }
        return fds
    }

    /// Seconds until this endpoint wants `service` called even without input.
    public func timeout(now: Double) -> Double? {
        guard mode == .client, connection.isEmpty else { return nil }
        return max(0, nextAttempt - now)
    }

    /// Does whatever is due: accept, connect, read and answer messages.
    public func service(now: Double) {
        if connection.isEmpty {
            switch mode {
            case .server: acceptPending()
            case .client: if now >= nextAttempt { tryConnect(now: now) }
            }
        }
        if !connection.isEmpty {
            rejectExtraConnections()
            readMessages()
            device.checkHealth(now: now)
        }
    }

    private func acceptPending() {
        guard !listener.isEmpty else { return }
        do {
            guard let fd = try UnixSocket.accept(listener.rawValue) else { return }
            try fd.setNonBlocking()
            logger.info("vhost-user \(device.name): front-end connected on \(path)")
            adopt(fd)
        } catch {
            logger.error("vhost-user \(device.name): accept on \(path) failed: \(error)")
        }
    }

    private func tryConnect(now: Double) {
        do {
            let fd = try UnixSocket.connect(path: path)
            try fd.setNonBlocking()
            logger.info("vhost-user \(device.name): connected to front-end at \(path)")
            backoff = 0.1
            loggedWaiting = false
            adopt(fd)
        } catch {
            if !loggedWaiting {
                logger.info("vhost-user \(device.name): waiting for a front-end at \(path) (\(error)); retrying")
                loggedWaiting = true
            }
            nextAttempt = now + backoff
            backoff = min(backoff * 2, Self.maxBackoff)
        }
    }

    private func adopt(_ fd: consuming FileDescriptor) {
        connection.replace(with: fd)
        decoder = MessageDecoder()
        header = []
        payloadLeft = 0
    }

    /// A second front-end on a busy server socket is turned away, not queued forever.
    public func rejectExtraConnections() {
        guard !connection.isEmpty, !listener.isEmpty else { return }
        while let extra = try? UnixSocket.accept(listener.rawValue) {
            logger.warning("vhost-user \(device.name): refused a second front-end on \(path): one is already attached")
            _ = extra
        }
    }

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
        connection.close()
        logger.info("vhost-user \(device.name): front-end gone (\(why))")
        device.reset(reason: "front-end disconnected")
        nextAttempt = 0
        backoff = 0.1
    }
}
