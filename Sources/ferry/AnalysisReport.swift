import ControlProtocol
import Model
import Packets
import Ports

/// A sink's analysis and a generator's counts as the control socket and `ferry lab` report them.
enum AnalysisReport {
    static func analysis(of port: Port) -> AnalysisStatistics? {
        guard case .sink(let sink) = port else { return nil }
        return analysis(sink.analyser.snapshot)
    }

    static func generator(of port: Port) -> GeneratorStatistics? {
        guard case .gen(let gen) = port else { return nil }
        return GeneratorStatistics(sent: gen.sent, lagged: gen.laggedFrames, rate: gen.spec.framesPerSecond)
    }

    static func analysis(_ a: TrafficAnalysis) -> AnalysisStatistics {
        AnalysisStatistics(
            stamped: a.stamped, unstamped: a.unstamped, lost: a.lost, reordered: a.reordered, duplicates: a.duplicates,
            late: a.late, foreign: a.foreign, latency: latency(a.latency),
            flows: a.flows.map { f in
                FlowStatistics(flow: f.flow, frames: f.frames, bytes: f.bytes, lost: f.lost, reordered: f.reordered,
                               duplicates: f.duplicates, late: f.late,
                               latencyMean: f.frames == 0 ? 0 : Double(f.latencySum) / Double(f.frames),
                               latencyMax: f.latencyMax)
            })
    }

    static func latency(_ l: LatencySummary) -> LatencyStatistics {
        LatencyStatistics(count: l.count, mean: (l.mean * 10).rounded() / 10, p50: l.percentile(0.5),
                          p99: l.percentile(0.99), p999: l.percentile(0.999), max: l.max)
    }
}
