import Glibc
import Logging
import Packets
import Platform
import Ports
import Switching
import VhostUser

/// A named port, its number in the switch and the spec it came from.
public final class NamedPort {
    public let name: String
    public let index: UInt16
    public let spec: PortSpec
    public let port: Port

    init(name: String, index: UInt16, spec: PortSpec, port: Port) {
        self.name = name
        self.index = index
        self.spec = spec
        self.port = port
    }

    public var vlan: VLANMode { spec.vlan }

    public var state: String {
        switch port {
        case .vhost(let v):
            if let why = v.device.brokenReason { return "broken: \(why)" }
            if v.device.isRunning { return "running" }
            return v.endpoint.isConnected ? "negotiating" : (v.endpoint.mode == .server ? "listening" : "connecting")
        case .tap(let t):
            let error = t.lastError
            return error == 0 ? "running" : "running (last error: \(String(cString: strerror(error))))"
        case .xdp(let x):
            let mode = "xdp \(x.steering.attachedMode), \(x.copyMode.rawValue)"
            let error = x.lastError
            return error == 0 ? "running (\(mode))" : "running (\(mode), last error: \(String(cString: strerror(error))))"
        case .failed(let f): return "failed: \(f.reason)"
        case .packet(let p):
            let error = p.lastError
            return error == 0 ? "running" : "running (last error: \(String(cString: strerror(error))))"
        case .gen(let g): return g.isFinished ? "finished" : "running"
        case .sink: return "running"
        }
    }
}

public enum SwitchError: Error, CustomStringConvertible, Equatable {
    case port(String, String)
    case duplicateName(String)
    case tooManyPorts(Int)
    case noPorts
    case unknownPort(String)

    public var description: String {
        switch self {
        case .port(let spec, let why): "port '\(spec)': \(why)"
        case .duplicateName(let n): "two ports are named '\(n)'"
        case .tooManyPorts(let n): "\(n) ports: a switch has at most \(PortSet.maxPorts)"
        case .noPorts: "a switch needs at least one port"
        case .unknownPort(let n): "no port is named '\(n)'"
        }
    }
}

/// How the switch runs: workers, CPUs, burst size, the forwarding database.
public struct SwitchOptions: Sendable {
    public var workers = 1
    /// CPUs to pin workers to, in order (worker i on cpus[i % count]); nil: not pinned.
    public var cpus: [Int]?
    public var batchSize = 256
    public var fdbCapacity = ForwardingDatabase.defaultCapacity
    public var agingTime = ForwardingDatabase.defaultAgingTime

    public init() {}
}

/// A MAC-learning switch: ports, the workers that move frames between them,
/// the forwarding database they share, and the control loop that serves the
/// ports' sockets and writes the database.
///
/// Every receive queue of every port is polled by exactly one worker (spread
/// round-robin). Each worker transmits to port queue `worker % queues`, so
/// transmit queues are private to a worker unless a port has fewer queues than
/// there are workers; only those queues take a per-burst lock.
public final class Switch {
    public let ports: [NamedPort]
    public let workers: [Worker]
    public let bridge: Bridge
    public let gate: WorkerGroup
    public let learning: LearningService
    public let control = ControlLoop()
    public let options: SwitchOptions
    let logger: Logger
    private let transmitLocks: UnsafeMutablePointer<UInt32>
    private let transmitLockCount: Int

    public var database: ForwardingDatabase { bridge.database }
    public var forwarder: Forwarder { bridge.forwarder }

    public init(specs: [PortSpec], options: SwitchOptions = SwitchOptions(), logger: Logger) throws {
        self.logger = logger
        self.options = options
        guard !specs.isEmpty else { throw SwitchError.noPorts }
        guard specs.count <= PortSet.maxPorts else { throw SwitchError.tooManyPorts(specs.count) }
        precondition(options.workers >= 1)
        let bridge = Bridge(database: ForwardingDatabase(capacity: options.fdbCapacity, agingTime: options.agingTime))
        self.bridge = bridge
        let workers = (0..<options.workers).map { i in
            Worker(id: i, cpu: options.cpus.map { $0[i % $0.count] }, batchSize: options.batchSize, bridge: bridge)
        }
        self.workers = workers
        let gate = WorkerGroup(workers)
        self.gate = gate
        learning = LearningService(bridge: bridge, queues: workers.map(\.learning))

        var made: [NamedPort] = []
        for (i, spec) in specs.enumerated() {
            let name = spec.name ?? "p\(i)"
            if made.contains(where: { $0.name == name }) { throw SwitchError.duplicateName(name) }
            let port: Port
            switch spec.kind {
            case .vhost(let path, let client, let pairs):
                let device = VhostDevice(name: name, queuePairs: pairs, gate: gate, logger: logger)
                do {
                    let endpoint = try VhostUserEndpoint(path: path, mode: client ? .client : .server, device: device, logger: logger)
                    port = .vhost(VhostPort(endpoint: endpoint))
                    control.add(endpoint)
                } catch {
                    throw SwitchError.port(spec.text, "\(error)")
                }
            case .tap(let interface, let queues, let mtu):
                do {
                    let tap = try TapPort(name: interface, queues: queues, mtu: mtu, batchCapacity: options.batchSize)
                    logger.info("TAP \(interface): \(tap.queueCount) queue(s), frames written with \(tap.writePath.rawValue)")
                    port = .tap(tap)
                } catch {
                    throw SwitchError.port(spec.text, "\(error)")
                }
            case .xdp(let interface, let queues, let mode, let zeroCopy):
                do throws(XdpPortError) {
                    let xdp = try XdpPort(interface: interface, queues: queues, attach: mode, zeroCopy: zeroCopy,
                                          guestCapacity: options.fdbCapacity, batchCapacity: options.batchSize,
                                          logger: logger)
                    logger.info("""
                        xdp \(interface): \(xdp.queueCount) queue(s), program \(xdp.steering.attachedMode) mode \
                        (id \(xdp.steering.programID)), sockets in \(xdp.copyMode.rawValue) mode
                        """)
                    port = .xdp(xdp)
                } catch {
                    // The rest of the switch runs without it, as a bridge keeps running
                    // when one of its ports fails to open.
                    logger.error("port \(name) (\(spec.text)) failed to open: \(error)")
                    port = .failed(FailedPort(reason: "\(error)"))
                }
            case .packet(let interface, let queues):
                do {
                    let packet = try PacketPort(interface: interface, queues: queues)
                    logger.info("\(packet.summary)")
                    port = .packet(packet)
                } catch {
                    logger.error("port \(name) (\(spec.text)) failed to open: \(error)")
                    port = .failed(FailedPort(reason: "\(error)"))
                }
            case .gen(let dst, let src, let size, let count, let delay):
                port = .gen(GenPort(destination: dst, source: src, frameSize: size, count: count, delayMilliseconds: delay))
            case .sink:
                port = .sink(SinkPort())
            }
            made.append(NamedPort(name: name, index: UInt16(i), spec: spec, port: port))
        }
        ports = made
        control.add(learning)
        let steered = made.compactMap { p -> UplinkSteering.Uplink? in
            guard case .xdp(let x) = p.port else { return nil }
            return UplinkSteering.Uplink(index: p.index, name: p.name, vlan: p.vlan, program: x.steering)
        }
        // Right after learning: an address learned in this pass is steered in this pass.
        if !steered.isEmpty { control.add(UplinkSteering(uplinks: steered, database: bridge.database, logger: logger)) }
        var taps: [(name: String, port: TapPort)] = []
        var guests: [VhostDevice] = []
        var guestPorts: [(index: UInt16, name: String, device: VhostDevice)] = []
        var packetPorts: [(name: String, port: PacketPort)] = []
        for p in made {
            if case .tap(let t) = p.port { taps.append((p.name, t)) }
            if case .packet(let u) = p.port { packetPorts.append((p.name, u)) }
            if case .vhost(let v) = p.port {
                guests.append(v.device)
                guestPorts.append((p.index, p.name, v.device))
            }
        }
        if !guestPorts.isEmpty {
            control.add(GuestDepartureFlush(guests: guestPorts, database: bridge.database, logger: logger))
        }
        if !taps.isEmpty {
            control.add(TapOffloadPolicy(taps: taps, guests: guests, logger: logger))
            control.add(TapMTUWatch(taps: taps.map(\.port)))
        }
        if !packetPorts.isEmpty { control.add(PacketPortWatch(ports: packetPorts, logger: logger)) }
        let erring = made.compactMap { p -> PortErrorLog.Watched? in
            switch p.port {
            case .tap(let t): PortErrorLog.Watched(name: p.name, what: "tap \(t.device.name)", lastError: { t.lastError })
            case .xdp(let x): PortErrorLog.Watched(name: p.name, what: "xdp \(x.interface)", lastError: { x.lastError })
            default: nil
            }
        }
        if !erring.isEmpty { control.add(PortErrorLog(ports: erring, logger: logger)) }

        transmitLockCount = made.reduce(0) { $0 + $1.port.queueCount }
        transmitLocks = .allocate(capacity: transmitLockCount)
        transmitLocks.initialize(repeating: 0, count: transmitLockCount)

        bridge.setMembership(made.map(\.vlan))
        var sources: [[WorkerSource]] = Array(repeating: [], count: workers.count)
        var k = 0
        // A sink never has a frame to pull: no worker polls it, and it does not
        // count when receive queues are dealt out to workers.
        for p in made where !p.port.neverReceives {
            for q in 0..<p.port.queueCount {
                sources[k % workers.count].append(WorkerSource(index: p.index, port: p.port, queue: q))
                k += 1
            }
        }
        for w in workers {
            var lockBase = 0
            var table: [WorkerPort] = []
            for p in made {
                let queues = p.port.queueCount
                let q = w.id % queues
                let shared = workers.count > queues
                table.append(WorkerPort(port: p.port, vlan: p.vlan, transmitQueue: q,
                                        transmitLock: shared ? transmitLocks + lockBase + q : nil))
                lockBase += queues
            }
            w.configure(ports: table, sources: sources[w.id])
        }
    }

    deinit { transmitLocks.deallocate() }

    public func port(named name: String) -> NamedPort? { ports.first { $0.name == name } }

    /// Every worker's forwarding decisions, summed.
    public var decisions: (unicast: UInt64, flooded: UInt64, hairpin: UInt64) {
        workers.reduce((0, 0, 0)) {
            ($0.0 + $1.decisions.unicastFrames, $0.1 + $1.decisions.floodedFrames, $0.2 + $1.decisions.hairpinDrops)
        }
    }

    public func start() {
        for w in workers { w.start() }
    }

    public func stop() {
        for w in workers { w.stop() }
        for p in ports {
            switch p.port {
            case .vhost(let v): v.endpoint.shutDown("Ferry is stopping")
            // A TAP Ferry created disappears with its last descriptor; one that existed stays.
            case .tap(let t): t.device.close()
            // Detached while its sockets are still open: the hook is never left
            // pointing at sockets that are gone.
            case .xdp(let x): x.close()
            // A packet port's sockets close, and its promiscuous mode goes, when the switch lets go of it.
            case .packet, .failed, .gen, .sink: break
            }
        }
    }
}

extension VhostUserEndpoint: ControlLoopClient {}
