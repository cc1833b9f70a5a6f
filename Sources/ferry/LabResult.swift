import ControlProtocol
import Foundation

/// What `ferry lab` measured, as `--json FILE` writes it and the table shows it.
struct LabResult: Codable {
    struct Trial: Codable {
        /// What the trial was for: `throughput`, `ndr`, `pdr`, `latency 10%`, ...
        var purpose: String
        /// The rate asked for, frames per second; nil: as fast as the generator goes.
        var requestedPPS: Double?
        /// Frames sent per second over the trial, as the generator's clock saw them.
        var offeredPPS: Double
        /// Stamped frames the analyser counted per second of the trial's sending time.
        var receivedPPS: Double
        var offeredBPS: Double
        var sent: UInt64
        var received: UInt64
        var lost: UInt64
        /// lost / sent.
        var loss: Double
        var reordered: UInt64
        var duplicates: UInt64
        var lagged: UInt64
        var seconds: Double
        var latency: LatencyStatistics
        /// Non-empty latency buckets: [highest value in the bucket (ns), frames].
        var histogram: [[UInt64]]
        /// Frames the lab's own ports dropped during the trial, by port and reason (only those
        /// that dropped): whether the lab's side lost what the trial counts lost.
        var drops: [String: [String: UInt64]] = [:]

        enum CodingKeys: String, CodingKey {
            case purpose, requestedPPS = "requested_pps", offeredPPS = "offered_pps", receivedPPS = "received_pps"
            case offeredBPS = "offered_bps", sent, received, lost, loss, reordered, duplicates, lagged, seconds
            case latency, histogram, drops
        }
    }

    var test: String
    var ports: [String]
    var generator: String
    var analyser: String
    var duration: Double
    var lossLimit: Double
    var meanFrameSize: Double
    var trials: [Trial] = []
    /// The no-drop rate and the partial-drop rate (loss ≤ lossLimit), frames per second.
    var ndr: Double?
    var pdr: Double?
    /// Load average (1 min) when the lab started and ended: figures on a busy machine are indicative.
    var loadBefore: Double?
    var loadAfter: Double?
    var interrupted = false

    enum CodingKeys: String, CodingKey {
        case test, ports, generator, analyser, duration, lossLimit = "loss_limit", meanFrameSize = "mean_frame_size"
        case trials, ndr = "ndr_pps", pdr = "pdr_pps", loadBefore = "load_before", loadAfter = "load_after", interrupted
    }

    /// The table `ferry lab` prints at the end, and what the search found.
    var table: String {
        var table = TextTable([.init("trial", .right), .init("purpose"), .init("requested", .right),
                               .init("offered", .right), .init("received", .right), .init("loss", .right),
                               .init("p50", .right), .init("p99", .right), .init("p99.9", .right), .init("max", .right)])
        for (i, t) in trials.enumerated() {
            table.append([String(i + 1), t.purpose, t.requestedPPS.map { Self.pps($0) } ?? "max",
                          Self.pps(t.offeredPPS), Self.pps(t.receivedPPS), Self.percent(t.loss),
                          Self.time(t.latency.p50), Self.time(t.latency.p99), Self.time(t.latency.p999),
                          Self.time(t.latency.max)])
        }
        var text = table.lines.joined(separator: "\n") + "\n"
        let bits = { (pps: Double) in RateText.format(pps * self.meanFrameSize * 8) + "bit/s" }
        let size = Int(meanFrameSize.rounded())
        if let ndr { text += "NDR \(Self.pps(ndr)) (\(bits(ndr)) of \(size)-byte frames)\n" }
        if let pdr { text += "PDR \(Self.pps(pdr)) (\(bits(pdr))), loss <= \(Self.percent(lossLimit))\n" }
        if let loadBefore, let loadAfter {
            text += "load average \(Self.decimal(loadBefore, 2)) -> \(Self.decimal(loadAfter, 2))\n"
        }
        if interrupted { text += "interrupted: the figures are of the trials that ran\n" }
        return text
    }

    static func pps(_ value: Double) -> String { RateText.format(value) + "pps" }

    static func percent(_ fraction: Double) -> String { decimal(fraction * 100, 3) + "%" }

    /// Nanoseconds as a person reads them: 850ns, 12.3us, 4.56ms.
    static func time(_ ns: UInt64) -> String {
        let v = Double(ns)
        if v < 1000 { return "\(ns)ns" }
        if v < 1_000_000 { return decimal(v / 1000, 1) + "us" }
        return decimal(v / 1_000_000, 2) + "ms"
    }

    /// `value` with `digits` decimals, without Foundation's locale-dependent formatting.
    static func decimal(_ value: Double, _ digits: Int) -> String {
        guard value.isFinite else { return "-" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let units = Int((abs(value) * scale).rounded())
        let sign = value < 0 && units > 0 ? "-" : ""
        guard digits > 0 else { return sign + String(units) }
        var fraction = String(units % Int(scale))
        while fraction.count < digits { fraction = "0" + fraction }
        return sign + String(units / Int(scale)) + "." + fraction
    }
}
