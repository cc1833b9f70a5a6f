import Logging
import Model
import Packets
import Platform
import Ports
import Switching
import VhostUser
import XDP

/// A named port, its number in the switch and the spec it came from.
public final class NamedPort {
    public let name: String
    public let index: PortIndex
    public let spec: PortSpec
    public let port: Port
    /// One lock per transmit queue, taken only where several workers share the
    /// queue (fewer queues than workers). Workers hold raw pointers into it, so
    /// it lives as long as the port, which outlives every table naming it.
    let transmitLocks: UnsafeMutablePointer<UInt32>
    /// What the control thread serves for this port alone, while the switch has it.
    let controlClients: [ControlLoopClient]

    init(name: String, index: PortIndex, spec: PortSpec, port: Port, logger: Logger) {
        self.name = name
        self.index = index
        self.spec = spec
        self.port = port
        controlClients = port.controlClients(name: name, logger: logger)
        // SAFETY: the fill covers exactly the queueCount words just allocated.
        transmitLocks = .allocate(capacity: port.queueCount)
        transmitLocks.initialize(repeating: 0, count: port.queueCount)
    }

    deinit { transmitLocks.deallocate() }

    public var vlan: VLANMode { spec.vlan }

    public var state: String { port.state }
}

public enum SwitchError: Error, CustomStringConvertible, Equatable {
    case port(String, String)
    case duplicateName(String)
    case tooManyPorts(Int)
    case noPorts
    case unknownPort(String)
    /// A port added while running takes a name another port has.
    case nameInUse(String)
    /// A port added while running finds every port number taken.
    case full
    /// The ports' receive queues would give one worker more than it polls.
    case tooManyQueues(Int)

    public var description: String {
        switch self {
        case .port(let spec, let why): "port '\(spec)': \(why)"
        case .duplicateName(let n): "two ports are named '\(n)'"
        case .tooManyPorts(let n): "\(n) ports: a switch has at most \(PortSet.maxPorts)"
        case .noPorts: "a switch needs at least one port"
        case .unknownPort(let n): "no port is named '\(n)'"
        case .nameInUse(let n): "a port is already named '\(n)'"
        case .full: "the switch is full (\(PortSet.maxPorts) ports)"
        case .tooManyQueues(let n):
            "\(n) receive queues: each worker polls at most \(Worker.maxSources); add workers or use fewer queues"
        }
    }
}

/// A MAC-learning switch: ports, the workers that move frames between them,
/// the forwarding database they share, and the control loop that serves the
/// ports' sockets and writes the database.
///
/// Every receive queue of every port is polled by exactly one worker (spread
/// round-robin). Each worker transmits to port queue `worker % queues`, so
/// transmit queues are private to a worker unless a port has fewer queues than
/// there are workers; only those queues take a per-burst lock.
///
/// Ports come and go while it runs (Switch+LiveChanges.swift); everything
/// here that depends on the port set is built from `ports` by `adopt`.
public final class Switch {
    /// Every port, by index. An index is a port's number in the forwarding
    /// database and in every `PortSet`; it never changes while the port lives.
    public internal(set) var ports: [NamedPort] = []
    public let workers: [Worker]
    public let bridge: Bridge
    public let gate: WorkerGroup
    public let learning: LearningService
    public let control = ControlLoop()
    public let options: SwitchOptions
    let logger: Logger
    let watchers = PortWatchers()
    /// Every TAP's filter, which tells the workers who sends into it: loaded
    /// with the first TAP of a switch whose workers are not pinned (`cpus`).
    private(set) var senderCPU: SenderCPUProgram?
    private var senderCPULoadTried = false

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
            Worker(id: i, cpu: options.cpus.map { $0[i % $0.count] }, batchSize: options.batchSize, bridge: bridge,
                   idle: options.idle, wakePriority: options.wakePriority)
        }
        self.workers = workers
        gate = WorkerGroup(workers)
        learning = LearningService(bridge: bridge, queues: workers.map(\.learning))

        var made: [NamedPort] = []
        for (i, spec) in specs.enumerated() {
            let name = spec.name ?? "p\(i)"
            if made.contains(where: { $0.name == name }) { throw SwitchError.duplicateName(name) }
            // The rest of the switch runs without an uplink that fails to open, as a
            // bridge keeps running when one of its ports fails to open.
            made.append(try open(spec, name: name, index: PortIndex(truncating: i), failedUplinkKept: true))
        }
        try checkQueues(made)
        for p in made { for client in p.controlClients { control.add(client) } }
        control.add(learning)
        adopt(made)
    }

    /// Opens the port `spec` describes as port number `index`. An uplink
    /// (xdp, packet) that fails to open becomes a `FailedPort` when
    /// `failedUplinkKept`; otherwise, like any other port, it is an error.
    func open(_ spec: PortSpec, name: String, index: PortIndex, failedUplinkKept: Bool) throws(SwitchError) -> NamedPort {
        if case .tap = spec.kind { loadSenderCPUProgram() }
        let context = PortContext(gate: gate, batchSize: options.batchSize, addressCapacity: options.fdbCapacity,
                                  logger: logger, senderCPU: senderCPU)
        do throws(PortOpenError) {
            let port = try Port.open(spec, name: name, context: context, keepingFailedUplink: failedUplinkKept)
            return NamedPort(name: name, index: index, spec: spec, port: port, logger: logger)
        } catch {
            throw .port(spec.text, error.description)
        }
    }

    /// Loads the TAP sender program once, and tells the workers to follow
    /// it (SenderFollowing.swift). A failure costs only the following: logged once.
    private func loadSenderCPUProgram() {
        guard options.cpus == nil, !senderCPULoadTried else { return }
        senderCPULoadTried = true
        do {
            let program = try SenderCPUProgram.load(logger: logger)
            senderCPU = program
            for worker in workers { worker.followSenders(of: program) }
            logger.info("TAP sender program loaded: a worker woken by a TAP moves to the sender's CPU")
        } catch {
            logger.notice("\(error); workers wake where they last ran (pin them with cpus for the best latency)")
        }
    }

    /// Makes `newPorts` (in index order) the switch's ports: every worker's
    /// tables and the VLAN membership are built here, on the control thread,
    /// and swapped in while every worker is parked between bursts, so no burst
    /// sees a port in one table and not in another. The per-port control-loop
    /// clients follow.
    func adopt(_ newPorts: [NamedPort]) {
        let membership = VLANMembership(newPorts.map { ($0.index, $0.vlan) })
        var sources: [[WorkerSource]] = Array(repeating: [], count: workers.count)
        var k = 0
        // A sink never has a frame to pull: no worker polls it, and it does not
        // count when receive queues are dealt out to workers.
        for p in newPorts where !p.port.neverReceives {
            for q in 0..<p.port.queueCount {
                sources[k % workers.count].append(WorkerSource(index: p.index, port: p.port, queue: q))
                k += 1
            }
        }
        let underlays = wireUnderlays(newPorts)
        let width = newPorts.map { Int($0.index) + 1 }.max() ?? 0
        var tables: [(ports: [WorkerPort], sources: [WorkerSource])] = []
        for w in workers {
            var table = (0..<width).map { _ in WorkerPort.vacant() }
            for p in newPorts {
                let queues = p.port.queueCount
                let q = w.id % queues
                let shared = workers.count > queues
                // SAFETY: q = w.id % queues < queueCount, the port's number of lock words.
                let lock = shared ? TransmitLock(word: p.transmitLocks + q) : nil
                table[Int(p.index)] = WorkerPort(port: p.port, vlan: p.vlan, transmitQueue: q, transmitLock: lock,
                                                 groupForwardMask: p.spec.groupForwardMask,
                                                 underlay: underlays[p.index].map { Int($0) } ?? -1,
                                                 tunnelPorts: underlays.filter { $0.value == p.index }.map { Int($0.key) }.sorted())
            }
            tables.append((table, w.prepare(ports: table, sources: sources[w.id], members: membership.members)))
        }
        gate.whilePaused {
            bridge.apply(membership)
            for (w, t) in zip(workers, tables) { w.install(ports: t.ports, sources: t.sources) }
        }
        ports = newPorts
        watchers.rebuild(for: newPorts, in: control, database: database, logger: logger)
    }

    /// Connects every vxlan port with `via=` to the `xdp:` port it names (its
    /// interface, for the outer headers); returns the uplink of each. A port
    /// whose `via=` names no running xdp port sends through the kernel's UDP
    /// socket as one without, and says so.
    func wireUnderlays(_ candidate: [NamedPort]) -> [PortIndex: PortIndex] {
        var wired: [PortIndex: PortIndex] = [:]
        for p in candidate {
            guard let via = p.spec.underlay else { continue }
            let fallback = "its datagrams go through the kernel's UDP socket"
            guard let uplink = candidate.first(where: { $0.name == via }) else {
                p.port.disconnectUnderlay()
                logger.warning("vxlan port \(p.name): via=\(via) names no port; \(fallback)")
                continue
            }
            do {
                if try p.port.connectUnderlay(to: uplink.port) {
                    wired[p.index] = uplink.index
                } else {
                    logger.warning("vxlan port \(p.name): via=\(via) is not a running xdp: port; \(fallback)")
                }
            } catch {
                p.port.disconnectUnderlay()
                logger.warning("vxlan port \(p.name): cannot send through \(via) (\(error)); \(fallback)")
            }
        }
        return wired
    }

    /// Refuses a port set whose receive queues, dealt round-robin, would give a
    /// worker more than `Worker.maxSources` (its per-source scratch is sized once).
    func checkQueues(_ candidate: [NamedPort]) throws(SwitchError) {
        let queues = candidate.reduce(0) { $0 + ($1.port.neverReceives ? 0 : $1.port.queueCount) }
        if (queues + workers.count - 1) / workers.count > Worker.maxSources { throw .tooManyQueues(queues) }
    }

    public func port(named name: String) -> NamedPort? { ports.first { $0.name == name } }

    /// The port numbered `index` (its number in the forwarding database), if any.
    public func port(index: PortIndex) -> NamedPort? { ports.first { $0.index == index } }

    /// Every worker's forwarding decisions, summed.
    public var decisions: (unicast: UInt64, flooded: UInt64, hairpin: UInt64) {
        workers.reduce((0, 0, 0)) {
            ($0.0 + $1.decisions.unicastFrames, $0.1 + $1.decisions.floodedFrames, $0.2 + $1.decisions.hairpinDrops)
        }
    }

    public func start() {
        // Asked here, on the control thread, so that a refusal is logged once and not per worker.
        if options.wakePriority == .realtime {
            if let refusal = ThreadScheduling.set(realtime: true) {
                logger.warning("workers wake in the normal scheduling class: real-time refused (\(refusal)); wake_priority realtime needs CAP_SYS_NICE or an RLIMIT_RTPRIO of 1 (systemd: LimitRTPRIO=1)")
                for w in workers { w.realtimeAllowed = false }
            } else {
                _ = ThreadScheduling.set(realtime: false)
            }
        }
        warnOfCPUsOutsideTheAllowedSet()
        for w in workers { w.start() }
    }

    /// A worker pins itself on its own thread, which cannot log; the mask it
    /// inherits from this thread is the one the kernel checks its pin against,
    /// so a CPU outside it is named here, once, before the pin fails.
    private func warnOfCPUsOutsideTheAllowedSet() {
        guard let cpus = options.cpus, let allowed = ThreadAffinity.allowed() else { return }
        for cpu in Set(cpus).sorted() where !allowed.contains(cpu) {
            logger.warning("cpus: CPU \(cpu) is not one Ferry may run on (offline, or outside its taskset or cpuset); the workers given it run where the scheduler puts them")
        }
    }

    public func stop() {
        for w in workers { w.stop() }
        for p in ports { p.port.shutDown(why: "Ferry is stopping") }
    }

}

