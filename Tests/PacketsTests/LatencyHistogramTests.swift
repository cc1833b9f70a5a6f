import XCTest

@testable import Packets

final class LatencyHistogramTests: XCTestCase {
    func testBucketsHoldTheirValuesWithinOneSixtyFourth() {
        for value: UInt64 in [0, 1, 127, 128, 129, 255, 256, 1000, 12_345, 1_000_000, 987_654_321, 1 << 40] {
            let bucket = LatencyHistogram.bucket(value)
            let high = LatencyHistogram.highestValue(ofBucket: bucket)
            XCTAssertGreaterThanOrEqual(high, value)
            XCTAssertLessThanOrEqual(Double(high - value), Double(value) / 64 + 1, "\(value)")
            if bucket > 0 { XCTAssertLessThan(LatencyHistogram.highestValue(ofBucket: bucket - 1), value) }
        }
        XCTAssertEqual(LatencyHistogram.bucket(UInt64.max), LatencyHistogram.bucketCount - 1)
    }

    func testPercentilesAreOrderedAndNearTheValues() {
        let h = LatencyHistogram()
        for v in 1...10_000 { h.record(UInt64(v) * 100) }
        let s = h.snapshot
        XCTAssertEqual(s.count, 10_000)
        XCTAssertEqual(s.max, 1_000_000)
        XCTAssertEqual(Double(s.percentile(0.5)), 500_000, accuracy: 500_000 / 64)
        XCTAssertEqual(Double(s.percentile(0.99)), 990_000, accuracy: 990_000 / 64)
        XCTAssertLessThanOrEqual(s.percentile(0.999), s.max)
        XCTAssertEqual(s.mean, 500_050, accuracy: 1)
        let later = h.snapshot
        h.record(5)
        XCTAssertEqual(h.snapshot.since(later).count, 1)
        XCTAssertEqual(h.snapshot.since(later).percentile(0.5), 5)
    }
}
