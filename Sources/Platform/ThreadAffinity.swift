import CFerry
import Glibc

/// A set of CPU numbers, as the kernel's affinity mask holds them.
public struct CPUSet: Equatable, Sendable {
    /// Room for CPUs 0...1023 (glibc's `cpu_set_t`); the kernel refuses a
    /// shorter mask than its own CPU count, never a longer one.
    static let wordCount = 16
    /// CPU n is bit n % 64 of word n / 64.
    var words: [UInt64]

    public init(_ cpus: [Int] = []) {
        words = Array(repeating: 0, count: Self.wordCount)
        for cpu in cpus where (0..<Self.wordCount * 64).contains(cpu) { words[cpu / 64] |= 1 << UInt64(cpu % 64) }
    }

    public func contains(_ cpu: Int) -> Bool {
        guard cpu >= 0 && cpu < words.count * 64 else { return false }
        return words[cpu / 64] & (1 << UInt64(cpu % 64)) != 0
    }

    public var isEmpty: Bool { words.allSatisfy { $0 == 0 } }
}

/// Where the calling thread may run and where it runs now (sched_setaffinity(2),
/// sched_getcpu(3)).
public enum ThreadAffinity {
    /// The CPUs the calling thread may run on; nil if the kernel would not say.
    public static func allowed() -> CPUSet? {
        var set = CPUSet()
        guard ferry_get_affinity_mask(&set.words, Int32(set.words.count)) == 0 else { return nil }
        return set
    }

    /// Lets the calling thread run on `set` only. Nil when done, else the error
    /// (EINVAL: none of `set` is a CPU this thread's cpuset has).
    public static func allow(_ set: CPUSet) -> SystemError? {
        // Read only: the array's own storage is passed, nothing copied (a worker moves without allocating).
        ferry_set_affinity_mask(set.words, Int32(set.words.count)) == 0 ? nil : SystemError("sched_setaffinity", errno: errno)
    }

    /// Moves the calling thread to `cpu` and keeps it there. Nil when done, else the error.
    public static func pin(to cpu: Int) -> SystemError? {
        guard cpu >= 0, let number = Int32(exactly: cpu) else { return SystemError("sched_setaffinity(\(cpu))", errno: EINVAL) }
        return ferry_set_affinity(number) == 0 ? nil : SystemError("sched_setaffinity(\(cpu))", errno: errno)
    }

    /// The CPU the calling thread runs on now (glibc reads it without a
    /// syscall where the kernel offers one: rseq or the vDSO's getcpu); nil if unknown.
    public static func currentCPU() -> Int? {
        let cpu = ferry_current_cpu()
        return cpu >= 0 ? Int(cpu) : nil
    }
}
