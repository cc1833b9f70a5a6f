import Foundation

/// `ferry lab --plot FILE.svg`: loss against offered rate (every trial, the NDR and PDR
/// marked) beside the latency histograms of the latency trials (or of the last trial),
/// drawn as SVG text by Ferry itself, so a fresh machine needs nothing installed to get a
/// chart any browser shows.
enum LabPlot {
    static let width = 960.0
    static let height = 400.0
    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]

    static func svg(_ result: LabResult) -> String {
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
            viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(width / 2)" y="20" text-anchor="middle" font-size="15">\
            ferry lab \(escape(result.test)): \(escape(result.ports.joined(separator: "  ")))</text>

            """
        svg += lossPanel(result, x: 60, y: 50, w: 380, h: 290)
        svg += latencyPanel(result, x: 540, y: 50, w: 380, h: 290)
        return svg + "</svg>\n"
    }

    /// Loss (%) against offered rate (Mpps), one dot per trial, NDR and PDR as vertical lines.
    static func lossPanel(_ result: LabResult, x: Double, y: Double, w: Double, h: Double) -> String {
        let trials = result.trials
        let maxRate = max(trials.map(\.offeredPPS).max() ?? 1, result.pdr ?? 0, 1) * 1.05
        let maxLoss = max(trials.map(\.loss).max() ?? 0, result.lossLimit, 0.001) * 100 * 1.1
        var s = axes(x: x, y: y, w: w, h: h, xLabel: "offered rate (Mpps)", yLabel: "loss (%)",
                     xTicks: ticks(maxRate / 1e6), yTicks: ticks(maxLoss), xMax: maxRate / 1e6, yMax: maxLoss)
        func px(_ rate: Double) -> Double { x + rate / maxRate * w }
        func py(_ loss: Double) -> Double { y + h - loss * 100 / maxLoss * h }
        for (rate, name, color) in [(result.ndr, "NDR", "#2ca02c"), (result.pdr, "PDR", "#ff7f0e")] {
            guard let rate, rate > 0 else { continue }
            s += "<line x1=\"\(f(px(rate)))\" y1=\"\(f(y))\" x2=\"\(f(px(rate)))\" y2=\"\(f(y + h))\" "
                + "stroke=\"\(color)\" stroke-dasharray=\"4 3\"/>\n"
            s += "<text x=\"\(f(px(rate) + 3))\" y=\"\(f(name == "NDR" ? y + 12 : y + 26))\" fill=\"\(color)\">"
                + "\(name) \(LabResult.pps(rate))</text>\n"
        }
        for t in trials {
            s += "<circle cx=\"\(f(px(t.offeredPPS)))\" cy=\"\(f(py(t.loss)))\" r=\"4\" fill=\"\(color(of: t.purpose))\">"
                + "<title>\(escape(t.purpose)): \(LabResult.pps(t.offeredPPS)), loss \(LabResult.percent(t.loss))</title></circle>\n"
        }
        return s
    }

    /// Share of frames against latency (log scale), one line per latency trial.
    static func latencyPanel(_ result: LabResult, x: Double, y: Double, w: Double, h: Double) -> String {
        var shown = result.trials.filter { $0.purpose.hasPrefix("latency") && !$0.histogram.isEmpty }
        if shown.isEmpty, let last = result.trials.last(where: { !$0.histogram.isEmpty }) { shown = [last] }
        let all = shown.flatMap(\.histogram).map { Double(max($0[0], 1)) }
        let low = floor(log10(all.min() ?? 100))
        let high = max(ceil(log10(all.max() ?? 1e6)), low + 1)
        // Twenty bins a decade.
        let binsPerDecade = 20.0
        let binCount = Int((high - low) * binsPerDecade)
        var series: [(String, [Double])] = []
        var top = 0.0
        for t in shown {
            var bins = [Double](repeating: 0, count: binCount)
            let total = Double(t.histogram.reduce(0) { $0 + $1[1] })
            for b in t.histogram {
                let i = min(binCount - 1, max(0, Int((log10(Double(max(b[0], 1))) - low) * binsPerDecade)))
                bins[i] += Double(b[1]) / max(total, 1) * 100
            }
            top = max(top, bins.max() ?? 0)
            series.append((t.purpose, bins))
        }
        top = max(top * 1.1, 1)
        var decades: [(Double, String)] = []
        for d in Int(low)...Int(high) { decades.append((Double(d) - low, LabResult.time(UInt64(pow(10, Double(d)))))) }
        var s = axes(x: x, y: y, w: w, h: h, xLabel: "latency (log scale)", yLabel: "frames (%)",
                     xTicks: decades, yTicks: ticks(top), xMax: high - low, yMax: top)
        for (i, (name, bins)) in series.enumerated() {
            var points: [String] = []
            for (b, v) in bins.enumerated() {
                let x0 = x + Double(b) / Double(binCount) * w
                let x1 = x + Double(b + 1) / Double(binCount) * w
                let yv = y + h - v / top * h
                points.append("\(f(x0)),\(f(yv))")
                points.append("\(f(x1)),\(f(yv))")
            }
            let color = color(of: name)
            s += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\" points=\"\(points.joined(separator: " "))\"/>\n"
            let p = shown[i].latency
            s += "<text x=\"\(f(x + w - 4))\" y=\"\(f(y + 14 + Double(i) * 15))\" text-anchor=\"end\" fill=\"\(color)\">"
                + "\(escape(name)): p50 \(LabResult.time(p.p50)) p99 \(LabResult.time(p.p99)) "
                + "p99.9 \(LabResult.time(p.p999))</text>\n"
        }
        return s
    }

    static func axes(x: Double, y: Double, w: Double, h: Double, xLabel: String, yLabel: String,
                     xTicks: [(Double, String)], yTicks: [(Double, String)], xMax: Double, yMax: Double) -> String {
        var s = "<rect x=\"\(f(x))\" y=\"\(f(y))\" width=\"\(f(w))\" height=\"\(f(h))\" fill=\"none\" stroke=\"#444\"/>\n"
        for (v, label) in xTicks where v <= xMax {
            let px = x + v / xMax * w
            s += "<line x1=\"\(f(px))\" y1=\"\(f(y + h))\" x2=\"\(f(px))\" y2=\"\(f(y + h + 4))\" stroke=\"#444\"/>"
                + "<text x=\"\(f(px))\" y=\"\(f(y + h + 17))\" text-anchor=\"middle\">\(escape(label))</text>\n"
        }
        for (v, label) in yTicks where v <= yMax {
            let py = y + h - v / yMax * h
            s += "<line x1=\"\(f(x - 4))\" y1=\"\(f(py))\" x2=\"\(f(x + w))\" y2=\"\(f(py))\" stroke=\"#ddd\"/>"
                + "<text x=\"\(f(x - 7))\" y=\"\(f(py + 4))\" text-anchor=\"end\">\(escape(label))</text>\n"
        }
        s += "<text x=\"\(f(x + w / 2))\" y=\"\(f(y + h + 36))\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        s += "<text transform=\"translate(\(f(x - 45)),\(f(y + h / 2))) rotate(-90)\" text-anchor=\"middle\">"
            + "\(escape(yLabel))</text>\n"
        return s
    }

    /// About five round ticks from 0 to `top`.
    static func ticks(_ top: Double) -> [(Double, String)] {
        guard top > 0, top.isFinite else { return [(0, "0")] }
        let raw = top / 5
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var ticks: [(Double, String)] = []
        var v = 0.0
        while v <= top + step / 1000 {
            let digits = step >= 1 ? 0 : Int(-floor(log10(step)))
            ticks.append((v, LabResult.decimal(v, digits)))
            v += step
        }
        return ticks
    }

    static func color(of purpose: String) -> String {
        switch purpose {
        case "ndr": colors[0]
        case "pdr": colors[3]
        case "max", "throughput": colors[1]
        case "latency 10%": colors[2]
        case "latency 50%": colors[4]
        case "latency 90%": colors[5]
        default: "#777"
        }
    }

    static func f(_ v: Double) -> String { LabResult.decimal(v, 1) }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
