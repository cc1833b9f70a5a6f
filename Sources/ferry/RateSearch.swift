import Foundation

/// The binary search of RFC 2544 §26.1 for the highest rate whose loss stays within a
/// bound: the upper bound is tried first; after that each trial halves the interval
/// between the highest rate that passed and the lowest that failed, until it is within
/// `precision` of the upper end. Pure: `ferry lab` runs the trials it asks for.
struct RateSearch {
    /// The largest loss, as a fraction of the frames sent, a passing trial may show.
    let lossLimit: Double
    /// The search ends when (failed - passed) <= precision × failed.
    let precision: Double
    /// The highest rate that passed; 0 before any did.
    private(set) var passed: Double = 0
    /// The lowest rate that failed, or the upper bound before it was tried.
    private(set) var failed: Double
    private var upperTried = false
    private let upperBound: Double

    init(upperBound: Double, lossLimit: Double, precision: Double) {
        failed = upperBound
        self.upperBound = upperBound
        self.lossLimit = lossLimit
        self.precision = precision
    }

    /// The rate to try next; nil when the search is over.
    var next: Double? {
        if !upperTried { return failed }
        if passed >= failed || failed - passed <= precision * failed { return nil }
        // Nothing passed down to `precision` of the upper bound: the answer is 0 at that resolution.
        if failed <= precision * upperBound { return nil }
        return (passed + failed) / 2
    }

    /// The result of the trial at `rate` (the one `next` gave).
    mutating func record(rate: Double, loss: Double) {
        upperTried = true
        if loss <= lossLimit {
            passed = max(passed, rate)
            if rate >= failed { failed = rate }
        } else {
            failed = min(failed, rate)
        }
    }

    /// Trials still to come at most, for the progress line's estimate.
    var trialsLeft: Int {
        guard next != nil else { return 0 }
        guard upperTried else { return 1 + Int((-log2(precision)).rounded(.up)) }
        let ratio = (failed - passed) / (precision * failed)
        return max(1, Int(log2(max(ratio, 1)).rounded(.up)))
    }
}

