import Glibc

/// Seconds on the monotonic clock, for timers (backoff, grace periods, delays).
public enum MonotonicClock {
    /// `coarse` reads the tick-resolution clock, a few nanoseconds cheaper: for
    /// a caller on the data path that needs only milliseconds.
    public static func now(coarse: Bool = false) -> Double {
        var ts = timespec()
        clock_gettime(coarse ? CLOCK_MONOTONIC_COARSE : CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

extension MonotonicClock {
    /// Whole seconds on the coarse monotonic clock: the forwarding database's time.
    @inlinable
    public static func seconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
        return UInt64(ts.tv_sec)
    }
}

/// The wall clock, for timestamps people and other programs read (pcap records).
public enum WallClock {
    /// Microseconds since the epoch (CLOCK_REALTIME, through the vDSO: no syscall).
    @inlinable
    public static func microseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000 &+ UInt64(ts.tv_nsec / 1000)
    }
}

extension MonotonicClock {
    /// Nanoseconds on the monotonic clock, for durations summed into counters.
    @inlinable
    public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
