/// What a sink read from the stamps of generator frames (docs/LAB.md): totals, latency
/// percentiles and each flow's counts. Counted since the port was opened: `stats-clear`
/// leaves it as it is (sequence accounting has no meaningful zero point mid-stream).
public struct AnalysisStatistics: Codable, Equatable, Sendable {
    public var stamped: UInt64
    public var unstamped: UInt64
    public var lost: UInt64
    public var reordered: UInt64
    public var duplicates: UInt64
    public var late: UInt64
    public var foreign: UInt64
    public var latency: LatencyStatistics
    public var flows: [FlowStatistics]

    public init(stamped: UInt64, unstamped: UInt64, lost: UInt64, reordered: UInt64, duplicates: UInt64, late: UInt64,
                foreign: UInt64, latency: LatencyStatistics, flows: [FlowStatistics]) {
        self.stamped = stamped
        self.unstamped = unstamped
        self.lost = lost
        self.reordered = reordered
        self.duplicates = duplicates
        self.late = late
        self.foreign = foreign
        self.latency = latency
        self.flows = flows
    }
}

/// Latencies in nanoseconds: percentiles to within 1/64 of the value, the maximum exact.
public struct LatencyStatistics: Codable, Equatable, Sendable {
    public var count: UInt64
    public var mean: Double
    public var p50: UInt64
    public var p99: UInt64
    public var p999: UInt64
    public var max: UInt64

    public init(count: UInt64, mean: Double, p50: UInt64, p99: UInt64, p999: UInt64, max: UInt64) {
        self.count = count
        self.mean = mean
        self.p50 = p50
        self.p99 = p99
        self.p999 = p999
        self.max = max
    }

    enum CodingKeys: String, CodingKey {
        case count, mean = "mean_ns", p50 = "p50_ns", p99 = "p99_ns", p999 = "p99_9_ns", max = "max_ns"
    }
}

/// One flow of a generator as a sink saw it.
public struct FlowStatistics: Codable, Equatable, Sendable {
    public var flow: Int
    public var frames: UInt64
    public var bytes: UInt64
    public var lost: UInt64
    public var reordered: UInt64
    public var duplicates: UInt64
    public var late: UInt64
    public var latencyMean: Double
    public var latencyMax: UInt64

    public init(flow: Int, frames: UInt64, bytes: UInt64, lost: UInt64, reordered: UInt64, duplicates: UInt64,
                late: UInt64, latencyMean: Double, latencyMax: UInt64) {
        self.flow = flow
        self.frames = frames
        self.bytes = bytes
        self.lost = lost
        self.reordered = reordered
        self.duplicates = duplicates
        self.late = late
        self.latencyMean = latencyMean
        self.latencyMax = latencyMax
    }

    enum CodingKeys: String, CodingKey {
        case flow, frames, bytes, lost, reordered, duplicates, late, latencyMean = "latency_mean_ns"
        case latencyMax = "latency_max_ns"
    }
}

/// A generator's own counts beside its traffic counters.
public struct GeneratorStatistics: Codable, Equatable, Sendable {
    /// Frames sent since the port was opened.
    public var sent: UInt64
    /// Frames its schedule gave up because the worker fell more than 50 ms behind.
    public var lagged: UInt64
    /// The rate it was asked for, frames per second; absent when unlimited.
    public var rate: Double?

    public init(sent: UInt64, lagged: UInt64, rate: Double?) {
        self.sent = sent
        self.lagged = lagged
        self.rate = rate
    }

    enum CodingKeys: String, CodingKey {
        case sent, lagged, rate = "rate_pps"
    }
}
