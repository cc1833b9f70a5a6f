import Engine
import Glibc
import Logging
import Platform

/// `ferry run --metrics ADDR:PORT`: a small HTTP/1.1 server on the control
/// thread, served through `ControlLoop` like the control socket: every socket
/// non-blocking, so a slow or silent scraper stalls no one. One request per
/// connection, answered and closed (routes: `MetricsRoute`).
public final class MetricsServer: ControlLoopClient {
    public let address: ListenAddress
    private let listener: DescriptorSlot
    private let render: () -> [UInt8]
    private let logger: Logger
    private var connections: [Int32: Connection] = [:]

    /// A connection that sent nothing useful for this long is closed.
    static let idleTimeout = 10.0
    /// Connections served at once; more wait in the listen backlog.
    static let maxConnections = 64

    private struct Connection {
        /// The connection; closed when the connection is done.
        let socket: DescriptorSlot
        var input: [UInt8] = []
        var output: [UInt8] = []
        var answered = false
        var lastActivity: Double
    }

    /// `render` produces the exposition text; it runs on the control thread.
    public init(address: ListenAddress, logger: Logger, render: @escaping () -> [UInt8]) throws(SystemError) {
        self.address = address
        self.render = render
        self.logger = logger
        listener = DescriptorSlot(try TCPListener.listen(address))
    }

    /// The port listened on (the kernel's choice when the address said 0).
    public var port: UInt16 { TCPListener.localPort(listener.rawValue) ?? address.port }

    public func close() {
        for connection in connections.values { connection.socket.close() }
        connections = [:]
        listener.close()
    }

    public var pollDescriptors: [Int32] {
        // Connections with a reply still to send are retried on the timeout below,
        // not polled: ControlLoop waits for input only.
        [listener.rawValue] + connections.filter { !$0.value.answered }.map(\.key)
    }

    public func timeout(now: Double) -> Double? {
        if connections.values.contains(where: { !$0.output.isEmpty }) { return 0.005 }
        return connections.isEmpty ? nil : Self.idleTimeout
    }

    public func service(now: Double) {
        while connections.count < Self.maxConnections, !listener.isEmpty,
              let accepted = try? UnixSocket.accept(listener.rawValue) {
            try? accepted.setNonBlocking()
            let fd = accepted.rawValue
            connections[fd] = Connection(socket: DescriptorSlot(accepted), lastActivity: now)
        }
        var buffer = [UInt8](repeating: 0, count: 4096)
        for fd in Array(connections.keys) {
            guard var connection = connections[fd] else { continue }
            var closed = false
            while !connection.answered {
                let received = try? StreamSocket.receive(fd, into: &buffer)
                guard let received else {
                    closed = true
                    break
                }
                guard case .done(let n) = received else { break }
                if n == 0 {
                    closed = true
                    break
                }
                connection.lastActivity = now
                connection.input.append(contentsOf: buffer[0..<n])
                let head = HTTPRequestHead.parse(connection.input)
                if let response = MetricsRoute.respond(to: head, metrics: render) {
                    var includeBody = true
                    if case .request(let method, _) = head, method == "HEAD" { includeBody = false }
                    connection.output = response.bytes(includingBody: includeBody)
                    connection.answered = true
                    connection.input = []
                    if response.status != 200 { logger.debug("metrics: \(response.status) for a request from fd \(fd)") }
                }
            }
            if !closed && !connection.output.isEmpty {
                closed = !flush(fd, &connection.output)
                if !connection.output.isEmpty { connection.lastActivity = now }
            }
            if closed || (connection.answered && connection.output.isEmpty)
                || now - connection.lastActivity > Self.idleTimeout {
                connection.socket.close()
                connections[fd] = nil
            } else {
                connections[fd] = connection
            }
        }
    }

    /// Sends what the socket takes now; false when the peer is gone.
    private func flush(_ fd: Int32, _ output: inout [UInt8]) -> Bool {
        while !output.isEmpty {
            guard let sent = try? StreamSocket.send(fd, output) else { return false }
            guard case .done(let n) = sent else { return true }
            output.removeFirst(n)
        }
        return true
    }
}
