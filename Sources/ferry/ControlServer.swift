import ControlProtocol
import Engine
import Glibc
import Logging
import Model
import Platform
import Telemetry

/// The control socket: one JSON object per line each way, their types in the
/// ControlProtocol target. The commands are answered in ControlServer+Commands.swift,
/// `capture` (which turns the connection into a pcap stream) in
/// ControlServer+Capture.swift, all in docs/CONTROL.md; a malformed, oversized or refused request gets an
/// `{"error":...}` reply and the connection stays usable. Several clients may
/// be connected at once. Served on the control thread, like the forwarding
/// database's writer, so it never blocks: replies a client does not read wait
/// in its output buffer, and its further requests wait unread in the socket
/// until it catches up (the client's own writes then block — backpressure, not
/// a stalled control thread).
final class ControlServer: ControlLoopClient {
    let path: String
    let sw: Switch
    let logger: Logger
    let captures: CaptureService
    private let listener = DescriptorSlot()
    /// By the connection's descriptor number.
    private var clients: [Int32: Client] = [:]
    /// Monotonic seconds when the server started: what `stats` counts from until a `stats-clear`.
    let startTime = MonotonicClock.now()
    /// The last `stats-clear`, if any.
    var counterMark: CounterMark?
    let rates = RateSampler()

    /// One connection's bytes in flight.
    private struct Client {
        /// The connection (closed by `drop`, or handed to a capture).
        let socket: DescriptorSlot
        /// Request bytes received, not yet a whole line.
        var input: [UInt8] = []
        /// Reply bytes the socket has not taken yet.
        var output: [UInt8] = []
        /// The rest of a line already refused as oversized is being thrown away.
        var skippingOversizedLine = false
        /// The client shut its sending side: close once the replies are out.
        var finished = false
    }

    static let maxLine = 65536
    /// Replies held for a client before its requests stop being read.
    static let maxPendingOutput = 256 * 1024
    /// Bytes read from one client per pass of the control loop, so a client that
    /// writes without pause cannot keep the thread from learning and vhost-user.
    static let readBudget = 64 * 1024
    /// Connections served at once; one more gets an error reply and is closed.
    static let maxClients = 64

    init(path: String, permissions: SocketPermissions.Resolved? = nil, switch sw: Switch, captures: CaptureService,
         logger: Logger) throws {
        self.path = path
        self.sw = sw
        self.logger = logger
        self.captures = captures
        // Room for a burst of connections the control thread has not accepted yet.
        let fd = try UnixSocket.listen(path: path, permissions: permissions, backlog: Int32(Self.maxClients * 2))
        try fd.setNonBlocking()
        listener.replace(with: fd)
    }

    func close() {
        for client in clients.values { client.socket.close() }
        clients = [:]
        if !listener.isEmpty {
            listener.close()
            unlink(path)
        }
    }

    /// Readable: the listener and clients whose replies have room. A client left
    /// out holds unread requests; watching it for input would wake the loop in a spin.
    var pollDescriptors: [Int32] {
        [listener.rawValue] + clients.filter { !$0.value.finished && $0.value.output.count < Self.maxPendingOutput }.map(\.key)
    }

    var pollOutputDescriptors: [Int32] { clients.filter { !$0.value.output.isEmpty }.map(\.key) }

    func timeout(now: Double) -> Double? { rates.timeout(now: now) }

    func service(now: Double) {
        rates.sampleIfDue(sw.ports, now: now)
        acceptPending()
        for fd in Array(clients.keys) {
            flush(fd)
            read(fd)
            flush(fd)
            if let client = clients[fd], client.finished, client.output.isEmpty { drop(fd) }
        }
    }

    private func acceptPending() {
        // accept4 makes a socket before it finds the queue empty: at every turn of the
        // loop that was a fifth of an idle control thread's time; a look costs less
        // (docs/PERFORMANCE.md, "Session 9: every slow reply accounted for").
        guard !listener.isEmpty, Self.readable(listener.rawValue) else { return }
        // A connection turned away below is closed as it goes out of scope.
        while !listener.isEmpty, let connection = try? UnixSocket.accept(listener.rawValue) {
            let fd = connection.rawValue
            if clients.count >= Self.maxClients { dropHungUp() }
            guard clients.count < Self.maxClients else {
                // Best effort, on a fresh socket whose buffer is empty: the refusal fits.
                let line = ControlCodec.encodeError(.tooManyConnections(limit: Self.maxClients), id: nil)
                _ = try? StreamSocket.send(fd, line)
                logger.warning("control: refused a connection: \(Self.maxClients) already open")
                continue
            }
            do throws(SystemError) { try connection.setNonBlocking() } catch { continue }
            clients[fd] = Client(socket: DescriptorSlot(connection))
        }
    }

    /// Reads and answers requests while the client's replies have room.
    private func read(_ fd: Int32) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        var budget = Self.readBudget
        answerLines(fd)
        while budget > 0, let client = clients[fd], !client.finished, client.output.count < Self.maxPendingOutput {
            let received = try? StreamSocket.receive(fd, into: &buffer)
            guard let received else {
                drop(fd)
                return
            }
            guard case .done(let n) = received else { return }
            if n == 0 {
                // A request without its newline never counts: it may be cut short.
                clients[fd]?.finished = true
                clients[fd]?.input = []
                return
            }
            budget -= n
            clients[fd]?.input.append(contentsOf: buffer[0..<n])
            answerLines(fd)
        }
    }

    /// Answers each whole line received, until the replies fill the client's room.
    private func answerLines(_ fd: Int32) {
        while var client = clients[fd], client.output.count < Self.maxPendingOutput {
            guard let newline = client.input.firstIndex(of: 10) else {
                if client.input.count > Self.maxLine && !client.skippingOversizedLine {
                    client.output += ControlCodec.encodeError(.tooLong(limit: Self.maxLine), id: nil)
                    client.skippingOversizedLine = true
                }
                // While skipping, only the newline ending the refused line matters.
                if client.skippingOversizedLine { client.input = [] }
                clients[fd] = client
                return
            }
            let line = client.input[..<newline]
            let wasSkipping = client.skippingOversizedLine
            client.input.removeSubrange(...newline)
            client.skippingOversizedLine = false
            if !wasSkipping {
                // A line whose newline came in the same read that took it past the limit
                // is as oversized as one refused before its end arrived.
                if line.count > Self.maxLine {
                    client.output += ControlCodec.encodeError(.tooLong(limit: Self.maxLine), id: nil)
                } else {
                    let incoming = ControlCodec.decodeRequest(line)
                    if case .success(.capture(let parameters)) = incoming.request {
                        if !client.output.isEmpty || !client.input.isEmpty {
                            // The connection becomes a pcap stream: nothing else may be on it.
                            client.output += ControlCodec.encodeError(.captureNotAlone, id: incoming.id)
                        } else if let refusal = startCapture(client.socket, parameters) {
                            client.output += ControlCodec.encodeError(refusal, id: incoming.id)
                        } else {
                            // The capture service owns the descriptor now (ControlServer+Capture.swift).
                            clients[fd] = nil
                            return
                        }
                    } else {
                        client.output += reply(to: incoming)
                    }
                }
            }
            clients[fd] = client
        }
    }

    /// Sends what the socket takes now; the rest waits for POLLOUT.
    private func flush(_ fd: Int32) {
        guard var client = clients[fd], !client.output.isEmpty else { return }
        let sent = try? StreamSocket.send(fd, client.output)
        guard let sent else {
            drop(fd)
            return
        }
        guard case .done(let n) = sent else { return }
        client.output.removeFirst(n)
        clients[fd] = client
    }

    /// Whether `fd` has input (for a listener: a connection to accept), without waiting.
    private static func readable(_ fd: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        // A failed look (ENOMEM) says yes: accept decides, as before.
        guard let ready = try? syscall("poll", { poll(&p, 1, 0) }) else { return true }
        return ready > 0
    }

    /// Drops connections whose client has gone (hung up, not yet noticed because
    /// their requests or replies were still pending), so they do not hold a place
    /// a live client is refused for.
    private func dropHungUp() {
        var fds = clients.keys.map { pollfd(fd: $0, events: 0, revents: 0) }
        guard let ready = try? syscall("poll", { poll(&fds, nfds_t(fds.count), 0) }), ready > 0 else { return }
        for p in fds where p.revents & Int16(POLLHUP | POLLERR) != 0 { drop(p.fd) }
    }

    private func drop(_ fd: Int32) {
        clients.removeValue(forKey: fd)?.socket.close()
    }
}
