import Engine
import Glibc
import Logging
import Model
import Packets
import Platform

/// What one capture asks for.
public struct CaptureRequest: Sendable {
    public let portName: String
    public let receive: Bool
    public let transmit: Bool
    /// Frames to write before the capture ends; nil: until the client or the port goes.
    public let count: Int?
    public let snapLength: Int

    public init(portName: String, receive: Bool, transmit: Bool, count: Int?, snapLength: Int) {
        self.portName = portName
        self.receive = receive
        self.transmit = transmit
        self.count = count
        self.snapLength = snapLength
    }

    public var directionName: String { receive && transmit ? "both" : (receive ? "rx" : "tx") }
}

/// Why a capture was refused; `message` is the control socket's error reply.
public struct CaptureRefusal: Error, Equatable {
    public let message: String
}

/// Runs the captures (`{"cmd":"capture"}` on the control socket): tells the
/// workers which ports to copy (`CaptureSelection`), drains every worker's
/// `CaptureRing` on the control thread, and writes each capture's frames as a
/// classic pcap stream to its client's connection.
///
/// A capture ends when its count is reached (after the last record is sent),
/// when the client closes its connection, or when its port goes away. A
/// client that reads slower than frames come loses frames (counted,
/// `slowReaderDrops`), never the workers' time: the service keeps at most
/// `maxPending` unsent bytes per client.
public final class CaptureService: ControlLoopClient {
    public static let maxCaptures = 16
    static let maxPending = 8 << 20
    /// While a capture runs the rings are drained this often (seconds): a 4 MiB
    /// ring takes some 400 MB/s of captured frames at this pace.
    static let drainInterval = 0.005

    private final class Session {
        /// The client's connection, closed when the capture finishes.
        let connection: FileDescriptor
        var fd: Int32 { connection.rawValue }
        let request: CaptureRequest
        let port: NamedPort
        var output: [UInt8]
        var written = 0
        var remaining: Int?
        var slowReaderDrops: UInt64 = 0
        /// Ring drops of the port's captured directions when this capture began.
        let ringDropsAtStart: UInt64
        var ending: String?

        init(connection: consuming FileDescriptor, request: CaptureRequest, port: NamedPort, ringDropsAtStart: UInt64) {
            self.connection = connection
            self.request = request
            self.port = port
            self.remaining = request.count
            self.ringDropsAtStart = ringDropsAtStart
            output = PcapFormat.fileHeader(snapLength: request.snapLength)
        }

        func wants(port index: PortIndex, _ direction: CaptureDirection) -> Bool {
            guard index == port.index, ending == nil, remaining != 0 else { return false }
            return direction == .receive ? request.receive : request.transmit
        }
    }

    private let sw: Switch
    private let logger: Logger
    private var sessions: [Session] = []
    /// Frames lost to slow readers since start, per port name and direction, for metrics.
    public private(set) var slowReaderDrops: [String: [CaptureDirection: UInt64]] = [:]

    public init(switch sw: Switch, logger: Logger) {
        self.sw = sw
        self.logger = logger
    }

    public var captureCount: Int { sessions.count }

    /// Frames of port `index` going `direction` that found a worker's ring full, since start.
    public func ringDrops(port index: PortIndex, direction: CaptureDirection) -> UInt64 {
        sw.workers.reduce(0) { $0 + $1.captureRing.dropped(port: index.rawValue, direction: direction) }
    }

    /// Starts a capture on the connected stream socket in `connection`, which the
    /// service takes out of it (and closes when the capture ends). On a refusal it
    /// stays in `connection`.
    public func start(connection: DescriptorSlot, request: CaptureRequest) throws(CaptureRefusal) {
        guard let port = sw.port(named: request.portName) else {
            throw CaptureRefusal(message: SwitchError.unknownPort(request.portName).description)
        }
        guard sessions.count < Self.maxCaptures else {
            throw CaptureRefusal(message: "\(Self.maxCaptures) captures are running: end one first")
        }
        guard (1...CaptureRing.maxSnapLength).contains(request.snapLength), request.receive || request.transmit else {
            throw CaptureRefusal(message: "snap length \(request.snapLength) is not 1...\(CaptureRing.maxSnapLength)")
        }
        var atStart: UInt64 = 0
        if request.receive { atStart += ringDrops(port: port.index, direction: .receive) }
        if request.transmit { atStart += ringDrops(port: port.index, direction: .transmit) }
        guard let socket = connection.take() else { preconditionFailure("a capture on a connection already closed") }
        let session = Session(connection: socket, request: request, port: port, ringDropsAtStart: atStart)
        sessions.append(session)
        select()
        logger.info("capture of \(port.name) (\(request.directionName)) started\(request.count.map { ", \($0) frames" } ?? "")")
        flush(session)
    }

    /// Ends every capture (Ferry is stopping).
    public func close() {
        for s in sessions where s.ending == nil { s.ending = "Ferry is stopping" }
        finishEnded(force: true)
    }

    public var pollDescriptors: [Int32] { sessions.map(\.fd) }

    public func timeout(now: Double) -> Double? { sessions.isEmpty ? nil : Self.drainInterval }

    public func service(now: Double) {
        drainRings()
        for s in sessions where s.ending == nil {
            if sw.port(named: s.request.portName) !== s.port { s.ending = "the port went away" }
            else if clientClosed(s.fd) { s.ending = "the client closed the connection"; s.output = [] }
        }
        for s in sessions { flush(s) }
        finishEnded(force: false)
    }

    /// Points the workers at the union of what the captures want.
    private func select() {
        var rx: [PortIndex] = []
        var tx: [PortIndex] = []
        var snap = 1
        for s in sessions where s.ending == nil {
            if s.request.receive { rx.append(s.port.index) }
            if s.request.transmit { tx.append(s.port.index) }
            snap = max(snap, s.request.snapLength)
        }
        sw.bridge.capture.select(receiving: rx, transmitting: tx, snapLength: snap)
    }

    /// Every worker's records, in time order, to the captures that want them.
    /// Drained even with no capture running: a worker may copy a last burst
    /// after its capture ended, and the ring must not keep it.
    private func drainRings() {
        var frames: [(microseconds: UInt64, port: PortIndex, direction: CaptureDirection, length: Int, bytes: [UInt8])] = []
        for w in sw.workers {
            w.captureRing.drain { frame in
                let port = PortIndex(frame.port)
                guard sessions.contains(where: { $0.wants(port: port, frame.direction) }) else { return }
                frames.append((frame.microseconds, port, frame.direction, frame.originalLength, Array(frame.bytes)))
            }
        }
        if sw.workers.count > 1 { frames.sort { $0.microseconds < $1.microseconds } }
        for frame in frames {
            for s in sessions where s.wants(port: frame.port, frame.direction) {
                if s.output.count >= Self.maxPending {
                    s.slowReaderDrops += 1
                    slowReaderDrops[s.port.name, default: [:]][frame.direction, default: 0] += 1
                    continue
                }
                PcapFormat.appendRecord(microseconds: frame.microseconds, originalLength: frame.length,
                                        frame: frame.bytes, snapLength: s.request.snapLength, to: &s.output)
                s.written += 1
                if let r = s.remaining {
                    s.remaining = r - 1
                    if r == 1 { s.ending = "\(s.written) frames captured" }
                }
            }
        }
    }

    /// Whether the peer hung up; anything it sent meanwhile is read and ignored.
    private func clientClosed(_ fd: Int32) -> Bool {
        var scratch = [UInt8](repeating: 0, count: 512)
        while true {
            guard let received = try? StreamSocket.receive(fd, into: &scratch) else {
                return true
            }
            guard case .done(let n) = received else { return false }
            if n == 0 { return true }
        }
    }

    private func flush(_ s: Session) {
        while !s.output.isEmpty {
            guard let sent = try? StreamSocket.send(s.fd, s.output) else {
                if s.ending == nil { s.ending = "the client went away" }
                s.output = []
                return
            }
            guard case .done(let n) = sent else { return }
            s.output.removeFirst(n)
        }
    }

    /// Closes the captures that ended and have sent everything (or must stop now).
    private func finishEnded(force: Bool) {
        var changed = false
        sessions.removeAll { s in
            guard let why = s.ending, s.output.isEmpty || force else { return false }
            var dropped: UInt64 = 0
            if s.request.receive { dropped += ringDrops(port: s.port.index, direction: .receive) }
            if s.request.transmit { dropped += ringDrops(port: s.port.index, direction: .transmit) }
            dropped -= min(dropped, s.ringDropsAtStart)
            logger.info("""
                capture of \(s.port.name) (\(s.request.directionName)) ended: \(why); \(s.written) frames written, \
                \(dropped) lost to a full ring, \(s.slowReaderDrops) to a slow reader
                """)
            // The session, and with it the connection, goes with this removal.
            changed = true
            return true
        }
        if changed { select() }
    }
}
