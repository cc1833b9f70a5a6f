import CFerry

/// Latencies in nanoseconds, counted into log-linear buckets as HdrHistogram does (every
/// power of two split into 64 equal buckets: a value is known to within 1/64, 1.6 %), with
/// one writer (the worker that receives the frames) and readers on other threads (`ctl
/// stats`, /metrics, `ferry lab`) that never stop it: every bucket is a relaxed atomic
/// (plain moves on x86-64). hdrhistogram-swift's `Histogram` is a value the writer owns
/// alone; sharing it would need a lock or a pause on the data path (docs/LAB.md).
public final class LatencyHistogram: @unchecked Sendable {
    /// Values below this are counted one bucket each.
    @usableFromInline static let linearLimit: UInt64 = 128
    @usableFromInline static let subBucketBits = 6
    /// The largest value counted as itself (2^41 ns, 36 minutes); larger ones go in the last bucket.
    @usableFromInline static let highestBit = 40
    public static let bucketCount = Int(linearLimit) + (highestBit - 6) * (1 << subBucketBits)

    // Buckets, then count, sum, max: one allocation, relaxed atomics throughout.
    @usableFromInline let slots: UnsafeMutablePointer<UInt64>
    @usableFromInline static var countSlot: Int { bucketCount }
    @usableFromInline static var sumSlot: Int { bucketCount + 1 }
    @usableFromInline static var maxSlot: Int { bucketCount + 2 }
    static let slotCount = bucketCount + 3

    public init() {
        // SAFETY: the fill covers exactly the slotCount counters just allocated.
        slots = .allocate(capacity: Self.slotCount)
        slots.initialize(repeating: 0, count: Self.slotCount)
    }

    deinit { slots.deallocate() }

    /// The bucket `value` falls in.
    @inlinable
    static func bucket(_ value: UInt64) -> Int {
        if value < linearLimit { return Int(value) }
        let top = 63 &- value.leadingZeroBitCount
        if top > highestBit { return bucketCount &- 1 }
        let shift = top &- subBucketBits
        let sub = Int(truncatingIfNeeded: (value >> UInt64(shift)) & UInt64((1 << subBucketBits) &- 1))
        return Int(linearLimit) &+ (top &- 7) &* (1 << subBucketBits) &+ sub
    }

    /// The highest value bucket `index` holds.
    static func highestValue(ofBucket index: Int) -> UInt64 {
        if index < Int(linearLimit) { return UInt64(index) }
        let top = (index - Int(linearLimit)) / (1 << subBucketBits) + 7
        let sub = UInt64((index - Int(linearLimit)) % (1 << subBucketBits))
        let shift = UInt64(top - subBucketBits)
        return ((UInt64(1 << subBucketBits) | sub) << shift) + (UInt64(1) << shift) - 1
    }

    @inlinable
    func add(_ slot: Int, _ n: UInt64) {
        // SAFETY: slot < slotCount: `bucket` never returns more than bucketCount - 1, the
        // other slots are the three constants after the buckets.
        let p = slots + slot
        ferry_store_relaxed_u64(p, ferry_load_relaxed_u64(p) &+ n)
    }

    /// Counts one latency. Only the owning worker calls it.
    @inlinable
    public func record(_ nanoseconds: UInt64) {
        add(Self.bucket(nanoseconds), 1)
        add(Self.countSlot, 1)
        add(Self.sumSlot, nanoseconds)
        // SAFETY: maxSlot = bucketCount + 2 < slotCount, the counters init allocated.
        let maxSlot = slots + Self.maxSlot
        if nanoseconds > ferry_load_relaxed_u64(maxSlot) { ferry_store_relaxed_u64(maxSlot, nanoseconds) }
    }

    /// The counts now, for percentiles; taken while the writer goes on, so a bucket may be
    /// one frame ahead of the total: the total is summed from the buckets.
    public var snapshot: LatencySummary {
        var buckets = [UInt64](repeating: 0, count: Self.bucketCount)
        var count: UInt64 = 0
        // SAFETY: i < bucketCount and the sum and max slots are bucketCount + 1 and + 2, all below
        // slotCount.
        for i in 0..<Self.bucketCount {
            let v = ferry_load_relaxed_u64(slots + i)
            buckets[i] = v
            count += v
        }
        return LatencySummary(buckets: buckets, count: count, sum: ferry_load_relaxed_u64(slots + Self.sumSlot),
                              max: ferry_load_relaxed_u64(slots + Self.maxSlot))
    }
}

/// A histogram's counts at one moment, and what is read from them.
public struct LatencySummary: Equatable, Sendable {
    public var buckets: [UInt64]
    public var count: UInt64
    public var sum: UInt64
    public var max: UInt64

    public init(buckets: [UInt64] = [UInt64](repeating: 0, count: LatencyHistogram.bucketCount), count: UInt64 = 0,
                sum: UInt64 = 0, max: UInt64 = 0) {
        self.buckets = buckets
        self.count = count
        self.sum = sum
        self.max = max
    }

    /// The value at or below which `fraction` (0...1) of the latencies lie, to within a
    /// bucket (the bucket's highest value, never more than the maximum); 0 when empty.
    public func percentile(_ fraction: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let wanted = Swift.max(1, UInt64((Double(count) * fraction).rounded(.up)))
        var seen: UInt64 = 0
        for (i, n) in buckets.enumerated() where n > 0 {
            seen += n
            if seen >= wanted { return Swift.min(LatencyHistogram.highestValue(ofBucket: i), max) }
        }
        return max
    }

    public var mean: Double { count == 0 ? 0 : Double(sum) / Double(count) }

    /// The counts since `earlier` (the same histogram, read before): one trial's latencies.
    public func since(_ earlier: LatencySummary) -> LatencySummary {
        var result = self
        for i in 0..<Swift.min(buckets.count, earlier.buckets.count) { result.buckets[i] &-= earlier.buckets[i] }
        result.count = result.buckets.reduce(0, &+)
        result.sum = sum &- earlier.sum
        // The maximum cannot be split by time: the highest non-empty bucket bounds it.
        if let top = result.buckets.lastIndex(where: { $0 > 0 }) {
            result.max = Swift.min(max, LatencyHistogram.highestValue(ofBucket: top))
        } else {
            result.max = 0
        }
        return result
    }

    /// Non-empty buckets as (highest value, count), for plots and JSON.
    public var nonEmptyBuckets: [(upTo: UInt64, count: UInt64)] {
        buckets.enumerated().compactMap { i, n in n > 0 ? (LatencyHistogram.highestValue(ofBucket: i), n) : nil }
    }
}
