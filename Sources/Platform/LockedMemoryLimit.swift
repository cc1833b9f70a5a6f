import Glibc

/// RLIMIT_MEMLOCK, which the kernel charges an AF_XDP UMEM to (pinned pages)
/// unless the process has CAP_IPC_LOCK.
public enum LockedMemoryLimit {
    /// The soft limit, in bytes (`UInt64.max` when unlimited).
    public static var current: UInt64 {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &limit) == 0 else { return 0 }
        return UInt64(limit.rlim_cur)
    }

    /// Raises the soft limit to the hard one, which needs no privilege; the
    /// hard limit itself can only be raised with CAP_SYS_RESOURCE.
    @discardableResult
    public static func raiseToHardLimit() -> UInt64 {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &limit)
        }
        return current
    }

    public static func describe(_ bytes: UInt64) -> String {
        bytes == UInt64.max ? "unlimited" : "\(bytes / 1024) KiB"
    }
}
