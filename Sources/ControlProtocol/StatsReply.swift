/// The reply to `stats` (and `show stats`): per-port and per-queue counters, the workers'
/// loop counters and the switch's.
///
/// The counts are since the last `stats-clear`, or since Ferry started: `cleared` says which
/// and `elapsed` how long ago that was. Both are absent from a Ferry that predates them.
public struct StatsReply: Codable, Equatable, Sendable {
    public var ports: [PortStatistics]
    public var workers: [WorkerStatistics]
    public var `switch`: SwitchStatistics
    /// Seconds the counts cover.
    public var elapsed: Double?
    /// True when the counts start at a `stats-clear`, false when at Ferry's start.
    public var cleared: Bool?

    public init(ports: [PortStatistics], workers: [WorkerStatistics], switch: SwitchStatistics,
                elapsed: Double? = nil, cleared: Bool? = nil) {
        self.ports = ports
        self.workers = workers
        self.switch = `switch`
        self.elapsed = elapsed
        self.cleared = cleared
    }
}

/// A port's rates over the last sampling interval: frames, bits (of the frames as switched,
/// without preamble or FCS) and drops per second.
public struct PortRates: Codable, Equatable, Sendable {
    public var rxPPS: Double
    public var rxBPS: Double
    public var txPPS: Double
    public var txBPS: Double
    public var dropsPPS: Double
    /// Seconds between the two samples the rates come from.
    public var interval: Double

    public init(rxPPS: Double, rxBPS: Double, txPPS: Double, txBPS: Double, dropsPPS: Double, interval: Double) {
        self.rxPPS = rxPPS
        self.rxBPS = rxBPS
        self.txPPS = txPPS
        self.txBPS = txBPS
        self.dropsPPS = dropsPPS
        self.interval = interval
    }

    enum CodingKeys: String, CodingKey {
        case rxPPS = "rx_pps", rxBPS = "rx_bps", txPPS = "tx_pps", txBPS = "tx_bps", dropsPPS = "drops_pps", interval
    }
}

/// Frames and bytes each way and drops by reason: a port's totals, or one queue's.
public struct TrafficCounters: Codable, Equatable, Sendable {
    public var rxPackets: UInt64
    public var rxBytes: UInt64
    public var txPackets: UInt64
    public var txBytes: UInt64
    /// Drop reason (docs/ARCHITECTURE.md's names) to count; reasons never seen are absent.
    public var drops: [String: UInt64]
    /// Offload work (OffloadCounter's names) for frames handed to the port; kinds never done
    /// are absent, and so is the whole field from a Ferry that predates it.
    public var offloads: [String: UInt64]?

    public init(rxPackets: UInt64, rxBytes: UInt64, txPackets: UInt64, txBytes: UInt64, drops: [String: UInt64],
                offloads: [String: UInt64]? = nil) {
        self.rxPackets = rxPackets
        self.rxBytes = rxBytes
        self.txPackets = txPackets
        self.txBytes = txBytes
        self.drops = drops
        self.offloads = offloads
    }

    enum CodingKeys: String, CodingKey {
        case rxPackets = "rx_packets", rxBytes = "rx_bytes", txPackets = "tx_packets", txBytes = "tx_bytes", drops
        case offloads
    }
}

/// A port's counters; its traffic counters sit beside its name on the wire, not inside a field.
public struct PortStatistics: Codable, Equatable, Sendable {
    public var name: String
    public var kind: String
    public var spec: String
    public var state: String
    public var traffic: TrafficCounters
    public var queues: [QueueStatistics]
    /// Absent until Ferry has sampled the port twice (a second after it started or was added),
    /// and from a Ferry that predates rates.
    public var rates: PortRates?
    /// A sink's reading of generator stamps; absent for other kinds.
    public var analysis: AnalysisStatistics?
    /// A generator's own counts; absent for other kinds.
    public var generator: GeneratorStatistics?

    public init(name: String, kind: String, spec: String, state: String, traffic: TrafficCounters,
                queues: [QueueStatistics], rates: PortRates? = nil, analysis: AnalysisStatistics? = nil,
                generator: GeneratorStatistics? = nil) {
        self.name = name
        self.kind = kind
        self.spec = spec
        self.state = state
        self.traffic = traffic
        self.queues = queues
        self.rates = rates
        self.analysis = analysis
        self.generator = generator
    }

    enum CodingKeys: String, CodingKey {
        case name, kind, spec, state, queues, rates, analysis, generator
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        kind = try c.decode(String.self, forKey: .kind)
        spec = try c.decode(String.self, forKey: .spec)
        state = try c.decode(String.self, forKey: .state)
        queues = try c.decode([QueueStatistics].self, forKey: .queues)
        rates = try c.decodeIfPresent(PortRates.self, forKey: .rates)
        analysis = try c.decodeIfPresent(AnalysisStatistics.self, forKey: .analysis)
        generator = try c.decodeIfPresent(GeneratorStatistics.self, forKey: .generator)
        traffic = try TrafficCounters(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        try traffic.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(kind, forKey: .kind)
        try c.encode(spec, forKey: .spec)
        try c.encode(state, forKey: .state)
        try c.encode(queues, forKey: .queues)
        try c.encodeIfPresent(rates, forKey: .rates)
        try c.encodeIfPresent(analysis, forKey: .analysis)
        try c.encodeIfPresent(generator, forKey: .generator)
    }
}

/// One queue's counters; `queue` beside the traffic counters, as for a port.
public struct QueueStatistics: Codable, Equatable, Sendable {
    public var queue: Int
    public var traffic: TrafficCounters

    public init(queue: Int, traffic: TrafficCounters) {
        self.queue = queue
        self.traffic = traffic
    }

    enum CodingKeys: String, CodingKey {
        case queue
    }

    public init(from decoder: any Decoder) throws {
        queue = try decoder.container(keyedBy: CodingKeys.self).decode(Int.self, forKey: .queue)
        traffic = try TrafficCounters(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        try traffic.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(queue, forKey: .queue)
    }
}

public struct WorkerStatistics: Codable, Equatable, Sendable {
    public var id: Int
    /// The CPU the worker is pinned to; null on the wire when it is not pinned.
    public var cpu: Int?
    public var busyLoops: UInt64
    public var idleLoops: UInt64
    public var sleeps: UInt64
    public var asleepNanoseconds: UInt64
    /// Learning requests the worker's queue to the control thread had no room for.
    public var learningOverflows: UInt64
    /// Times a TAP's frame woke the worker on another CPU than its sender's and the worker moved there.
    public var senderMoves: UInt64

    public init(id: Int, cpu: Int?, busyLoops: UInt64, idleLoops: UInt64, sleeps: UInt64, asleepNanoseconds: UInt64,
                learningOverflows: UInt64, senderMoves: UInt64) {
        self.id = id
        self.cpu = cpu
        self.busyLoops = busyLoops
        self.idleLoops = idleLoops
        self.sleeps = sleeps
        self.asleepNanoseconds = asleepNanoseconds
        self.learningOverflows = learningOverflows
        self.senderMoves = senderMoves
    }

    enum CodingKeys: String, CodingKey {
        case id, cpu, busyLoops = "busy_loops", idleLoops = "idle_loops", sleeps, asleepNanoseconds = "asleep_ns"
        case learningOverflows = "learning_overflows", senderMoves = "sender_moves"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        // Written as null, not left out: "not pinned" is an answer, not a missing field.
        try c.encode(cpu, forKey: .cpu)
        try c.encode(busyLoops, forKey: .busyLoops)
        try c.encode(idleLoops, forKey: .idleLoops)
        try c.encode(sleeps, forKey: .sleeps)
        try c.encode(asleepNanoseconds, forKey: .asleepNanoseconds)
        try c.encode(learningOverflows, forKey: .learningOverflows)
        try c.encode(senderMoves, forKey: .senderMoves)
    }
}

/// The forwarding decision's counters and the database's.
public struct SwitchStatistics: Codable, Equatable, Sendable {
    public var unicast: UInt64
    public var flooded: UInt64
    public var hairpin: UInt64
    public var fdb: FDBCountersInfo

    public init(unicast: UInt64, flooded: UInt64, hairpin: UInt64, fdb: FDBCountersInfo) {
        self.unicast = unicast
        self.flooded = flooded
        self.hairpin = hairpin
        self.fdb = fdb
    }
}
