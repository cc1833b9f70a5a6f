/// The trials of each `ferry lab` test, in order, and what is read from them.
struct LabProcedure {
    let bench: LabBench
    let progress: LabProgress
    let duration: Double
    /// Fraction of the rate within which the search stops.
    let precision: Double
    /// Frames per second: throughput's rate, the search's upper bound; nil: the generator's unhindered rate.
    let upperBound: Double?
    /// latency: the rate to take 10, 50 and 90 % of instead of searching.
    let knownNDR: Double?

    /// Seconds one trial takes, sending and draining.
    private var trialTime: Double { duration + 0.35 }

    func run(_ test: Lab.Test, into result: inout LabResult) {
        // Frames that teach the switch (and a guest, an external switch) the addresses
        // before anything is measured (RFC 2544 §23), at a rate every path takes.
        // Repeated until frames come back (a guest's or a front-end's forwarding may start
        // later than its rings), for at most 10 s.
        progress.trial = 0
        progress.remaining = 0.5
        for _ in 0..<20 where !stopped {
            if bench.trial("learning", rate: min(upperBound ?? 100_000, 100_000), duration: 0.5).received > 0 { break }
        }
        switch test {
        case .throughput:
            _ = measure("throughput", upperBound, &result)
        case .ndr:
            search(&result)
        case .latency:
            let ndr = knownNDR ?? search(&result)
            result.ndr = result.ndr ?? ndr
            for share in [10, 50, 90] where ndr > 0 && !stopped {
                progress.remaining = Double(90 - share) / 40 * trialTime + trialTime
                _ = measure("latency \(share)%", ndr * Double(share) / 100, &result)
            }
        }
    }

    private var stopped: Bool { bench.flags.interrupted.load(ordering: .relaxed) }

    private func measure(_ purpose: String, _ rate: Double?, _ result: inout LabResult) -> LabResult.Trial {
        progress.trial += 1
        let trial = bench.trial(purpose, rate: rate, duration: duration)
        result.trials.append(trial)
        return trial
    }

    /// The NDR, then the PDR from it; returns the NDR (frames per second).
    @discardableResult
    private func search(_ result: inout LabResult) -> Double {
        let upper = upperBound ?? {
            progress.remaining = trialTime
            return measure("max", nil, &result).offeredPPS
        }()
        let ndr = find("ndr", upper: upper, lossLimit: 0, &result)
        result.ndr = ndr
        if stopped { return ndr }
        // The PDR is at least the NDR: its search starts from there.
        let pdr = find("pdr", upper: upper, lossLimit: result.lossLimit, floor: ndr, &result)
        result.pdr = pdr
        return ndr
    }

    /// One binary search; the answer is the offered rate of the best passing trial.
    private func find(_ purpose: String, upper: Double, lossLimit: Double, floor: Double = 0,
                      _ result: inout LabResult) -> Double {
        var search = RateSearch(upperBound: upper, lossLimit: lossLimit, precision: precision)
        if floor > 0 { search.record(rate: floor, loss: 0) }
        var best = floor
        // An earlier trial at the upper bound (the search before this one) answers its first question.
        if floor > 0, let first = result.trials.last(where: { $0.requestedPPS == upper }) {
            search.record(rate: upper, loss: first.loss)
            if first.loss <= lossLimit { best = max(best, first.offeredPPS) }
        }
        while let rate = search.next, !stopped {
            progress.remaining = Double(search.trialsLeft) * trialTime
            let trial = measure(purpose, rate, &result)
            search.record(rate: rate, loss: trial.loss)
            if trial.loss <= lossLimit { best = max(best, trial.offeredPPS) }
        }
        return best
    }
}
