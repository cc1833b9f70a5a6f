import Glibc
import Logging
import Model
import Platform

/// The socket side of one vhost-user connection, for either end of the protocol (a back-end's
/// `VhostUserEndpoint`, a front-end's `VhostUserFrontEnd`): listening, it takes one peer at a
/// time and turns a second away rather than queue it; connecting, it retries with a doubling
/// backoff. Runs on the control thread and never blocks on the peer.
final class VhostUserSocket {
    let path: String
    let listening: Bool
    /// Who logs ("vhost-user vm0") and what the peer is ("front-end"), for the log lines.
    let owner: String
    let peer: String
    let logger: Logger
    private let listener = DescriptorSlot()
    /// The peer's connection while one is attached.
    let connection = DescriptorSlot()
    private var nextAttempt: Double = 0
    private var backoff: Double = 0.1
    private var loggedWaiting = false

    static let maxBackoff = 2.0

    /// A listening socket is made at once (with `permissions`), and throws as `UnixSocket.listen` does.
    init(path: String, listening: Bool, permissions: SocketPermissions.Resolved? = nil, owner: String,
         peer: String, logger: Logger) throws {
        self.path = path
        self.listening = listening
        self.owner = owner
        self.peer = peer
        self.logger = logger
        if listening {
            let fd = try UnixSocket.listen(path: path, permissions: permissions)
            try fd.setNonBlocking()
            listener.replace(with: fd)
        }
    }

    deinit {
        connection.close()
        listener.close()
        if listening { unlink(path) }
    }

    var isConnected: Bool { !connection.isEmpty }

    var pollDescriptors: [Int32] {
        var fds: [Int32] = []
        if !connection.isEmpty { fds.append(connection.rawValue) }
        // The listener stays watched while a peer is attached, so a second one is turned away at once.
        if !listener.isEmpty { fds.append(listener.rawValue) }
        return fds
    }

    /// Seconds until a client wants to try connecting again.
    func timeout(now: Double) -> Double? {
        guard !listening, connection.isEmpty else { return nil }
        return max(0, nextAttempt - now)
    }

    /// Takes a peer when none is attached and one is due (accepted, or connected to):
    /// true when a new connection was made. With one attached, turns away any other.
    func connectIfDue(now: Double) -> Bool {
        guard connection.isEmpty else {
            turnAwayExtraPeers()
            return false
        }
        if listening { return acceptPending() }
        return now >= nextAttempt && tryConnect(now: now)
    }

    /// A second peer on a busy listening socket is turned away, not queued forever.
    func turnAwayExtraPeers() {
        guard !connection.isEmpty, !listener.isEmpty else { return }
        while let extra = try? UnixSocket.accept(listener.rawValue) {
            logger.warning("\(owner): refused a second \(peer) on \(path): one is already attached")
            _ = extra
        }
    }

    private func acceptPending() -> Bool {
        guard !listener.isEmpty else { return false }
        do {
            guard let fd = try UnixSocket.accept(listener.rawValue) else { return false }
            try fd.setNonBlocking()
            logger.info("\(owner): \(peer) connected on \(path)")
            connection.replace(with: fd)
            return true
        } catch {
            logger.error("\(owner): accept on \(path) failed: \(error)")
            return false
        }
    }

    private func tryConnect(now: Double) -> Bool {
        do {
            let fd = try UnixSocket.connect(path: path)
            try fd.setNonBlocking()
            logger.info("\(owner): connected to \(peer) at \(path)")
            loggedWaiting = false
            connection.replace(with: fd)
            return true
        } catch {
            if !loggedWaiting {
                logger.info("\(owner): waiting for a \(peer) at \(path) (\(error)); retrying")
                loggedWaiting = true
            }
            nextAttempt = now + backoff
            backoff = min(backoff * 2, Self.maxBackoff)
            return false
        }
    }

    /// Closes the connection. A client connects again at once (`backingOff` false: the peer
    /// went away and may be back) or after the backoff, which doubles until a connection works
    /// (`connectionWorked`): a peer that refused may refuse again.
    func disconnect(backingOff: Bool, now: Double) {
        connection.close()
        if backingOff {
            nextAttempt = now + backoff
            backoff = min(backoff * 2, Self.maxBackoff)
        } else {
            nextAttempt = 0
            backoff = 0.1
        }
    }

    /// The connection did what it was for: a client that loses it next connects again promptly.
    func connectionWorked() { backoff = 0.1 }

    /// Stops listening and removes the socket file of a listening socket.
    func stopListening() {
        guard !listener.isEmpty else { return }
        listener.close()
        unlink(path)
    }
}
