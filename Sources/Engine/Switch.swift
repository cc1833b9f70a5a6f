import Logging
import Packets
import Platform
import Ports
import VhostUser

/// A named port and the spec it came from.
public final class NamedPort {
    public let name: String
    public let spec: PortSpec
    public let port: Port

    init(name: String, spec: PortSpec, port: Port) {
        self.name = name
        self.spec = spec
        self.port = port
    }

    public var state: String {
        switch port {
        case .vhost(let v):
            if let why = v.device.brokenReason { return "broken: \(why)" }
            if v.device.isRunning { return "running" }
            return v.endpoint.isConnected ? "negotiating" : (v.endpoint.mode == .server ? "listening" : "connecting")
        case .gen(let g): return g.isFinished ? "finished" : "running"
        case .sink: return "running"
        }
    }
}

public enum SwitchError: Error, CustomStringConvertible {
    case port(String, String)
    case duplicateName(String)
    case needsPairs(Int)

    public var description: String {
        switch self {
        case .port(let spec, let why): "port '\(spec)': \(why)"
        case .duplicateName(let n): "two ports are named '\(n)'"
        case .needsPairs(let n): "ports are cross-connected in pairs: give an even number, got \(n)"
        }
    }
}

/// Ports, the worker that moves frames between them, and the control loop
/// that serves their sockets. For now ports are cross-connected in pairs, in
/// the order given (1st with 2nd, 3rd with 4th, ...): every frame from one goes
/// to the other (MAC learning comes with the switch).
public final class Switch {
    public let ports: [NamedPort]
    public let worker: Worker
    public let control = ControlLoop()
    let logger: Logger

    public init(specs: [PortSpec], cpu: Int?, batchSize: Int, logger: Logger) throws {
        self.logger = logger
        guard specs.count >= 2, specs.count % 2 == 0 else { throw SwitchError.needsPairs(specs.count) }
        let worker = Worker(id: 0, cpu: cpu, batchSize: batchSize)
        self.worker = worker
        var made: [NamedPort] = []
        for (i, spec) in specs.enumerated() {
            let name = spec.name ?? "p\(i)"
            if made.contains(where: { $0.name == name }) { throw SwitchError.duplicateName(name) }
            let port: Port
            switch spec.kind {
            case .vhost(let path, let client, let pairs):
                let device = VhostDevice(name: name, queuePairs: pairs, gate: worker, logger: logger)
                do {
                    let endpoint = try VhostUserEndpoint(path: path, mode: client ? .client : .server, device: device, logger: logger)
                    port = .vhost(VhostPort(endpoint: endpoint))
                    control.add(endpoint)
                } catch {
                    throw SwitchError.port(spec.text, "\(error)")
                }
            case .gen(let dst, let src, let size, let count, let delay):
                port = .gen(GenPort(destination: dst, source: src, frameSize: size, count: count, delayMilliseconds: delay))
            case .sink:
                port = .sink(SinkPort())
            }
            made.append(NamedPort(name: name, spec: spec, port: port))
        }
        ports = made
        worker.setPaths(stride(from: 0, to: made.count, by: 2).flatMap { Self.crossConnect(made[$0].port, made[$0 + 1].port) })
    }

    public static func crossConnect(_ a: Port, _ b: Port) -> [ForwardingPath] {
        var paths: [ForwardingPath] = []
        for q in 0..<a.queueCount {
            paths.append(ForwardingPath(source: a, sourceQueue: q, destination: b, destinationQueue: q % b.queueCount))
        }
        for q in 0..<b.queueCount {
            paths.append(ForwardingPath(source: b, sourceQueue: q, destination: a, destinationQueue: q % a.queueCount))
        }
        return paths
    }

    public func start() {
        worker.start()
    }

    public func stop() {
        worker.stop()
        for p in ports {
            if case .vhost(let v) = p.port { v.endpoint.disconnect("Ferry is stopping") }
        }
    }
}

extension VhostUserEndpoint: ControlLoopClient {}
