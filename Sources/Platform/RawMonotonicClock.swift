import Glibc

/// Nanoseconds on CLOCK_MONOTONIC_RAW: the lab's send and receive times. The raw clock is
/// never slewed by NTP (a slewed clock would stretch or shrink latencies while it catches
/// up), is read through the vDSO without a syscall, and, unlike the TSC, needs no calibration
/// and stays right on a host whose TSC is not invariant or in a guest (docs/LAB.md).
public enum RawMonotonicClock {
    @inlinable
    public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC_RAW, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
