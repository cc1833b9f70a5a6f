import ControlProtocol
import XCTest
@testable import ferry

/// The NDR search against a device that loses nothing up to a capacity and more and more above.
final class RateSearchTests: XCTestCase {
    func search(capacity: Double, upper: Double, lossLimit: Double = 0, precision: Double = 0.01)
        -> (found: Double, trials: Int) {
        var search = RateSearch(upperBound: upper, lossLimit: lossLimit, precision: precision)
        var trials = 0
        while let rate = search.next {
            trials += 1
            XCTAssertLessThan(trials, 40, "the search does not end")
            if trials >= 40 { break }
            search.record(rate: rate, loss: rate <= capacity ? 0 : (rate - capacity) / rate)
        }
        return (search.passed, trials)
    }

    func testItConvergesOnTheCapacityWithinThePrecision() {
        let (found, trials) = search(capacity: 1_234_567, upper: 10_000_000)
        XCTAssertLessThanOrEqual(found, 1_234_567)
        XCTAssertGreaterThan(found, 1_234_567 * 0.98)
        XCTAssertLessThanOrEqual(trials, 1 + 10)
    }

    func testAnUpperBoundThatPassesIsTheAnswerAtOnce() {
        let (found, trials) = search(capacity: 5e6, upper: 2e6)
        XCTAssertEqual(found, 2e6)
        XCTAssertEqual(trials, 1)
    }

    func testAPartialDropRateIsAboveTheNoDropRate() {
        let ndr = search(capacity: 1e6, upper: 4e6).found
        let pdr = search(capacity: 1e6, upper: 4e6, lossLimit: 0.005).found
        XCTAssertGreaterThanOrEqual(pdr, ndr)
        XCTAssertLessThanOrEqual(pdr, 1e6 / 0.995)
    }

    func testNothingPassingEndsAtZero() {
        let (found, trials) = search(capacity: 0, upper: 1e6)
        XCTAssertEqual(found, 0)
        XCTAssertLessThanOrEqual(trials, 8)
    }

    func testTheTableAndThePlotShowEveryTrial() {
        var result = LabResult(test: "ndr", ports: ["gen:size=64", "sink"], generator: "p0", analyser: "p1",
                               duration: 1, lossLimit: 0.005, meanFrameSize: 64)
        let latency = LatencyStatistics(count: 10, mean: 1500, p50: 1200, p99: 4000, p999: 9000, max: 12000)
        for (purpose, rate, loss) in [("ndr", 2e6, 0.1), ("ndr", 1e6, 0.0), ("latency 50%", 5e5, 0.0)] {
            result.trials.append(LabResult.Trial(
                purpose: purpose, requestedPPS: rate, offeredPPS: rate, receivedPPS: rate * (1 - loss),
                offeredBPS: rate * 512, sent: 100, received: UInt64(100 * (1 - loss)), lost: UInt64(100 * loss),
                loss: loss, reordered: 0, duplicates: 0, lagged: 0, seconds: 1, latency: latency,
                histogram: [[1023, 4], [1215, 5], [12031, 1]]))
        }
        result.ndr = 1e6
        let table = result.table
        XCTAssertTrue(table.contains("NDR 1.00Mpps (512Mbit/s of 64-byte frames)"), table)
        XCTAssertEqual(table.split(separator: "\n").filter { $0.contains("ndr") }.count, 2, table)
        XCTAssertTrue(table.contains("1.2us"), table)
        let svg = LabPlot.svg(result)
        XCTAssertTrue(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"), svg)
        XCTAssertEqual(svg.components(separatedBy: "<circle").count - 1, 3)
        XCTAssertTrue(svg.contains("latency 50%: p50 1.2us"), svg)
        XCTAssertFalse(svg.contains("nan") || svg.contains("inf"), svg)
    }

    func testATrialKeepsOnlyTheDropsThatMovedDuringIt() {
        let before: [String: [String: UInt64]] = ["a": ["tx_full": 10], "b": ["no_rx_buffer": 3], "s": [:]]
        let after: [String: [String: UInt64]] = ["a": ["tx_full": 25, "not_ready": 0], "b": ["no_rx_buffer": 3],
                                                 "s": ["runt": 2], "new": ["tx_full": 1]]
        XCTAssertEqual(LabBench.increase(from: before, to: after),
                       ["a": ["tx_full": 15], "s": ["runt": 2], "new": ["tx_full": 1]])
    }
}
