import CFerry
import Glibc
import Synchronization

/// Keeps Ferry alive when a shared file it mapped shrinks under it.
///
/// A guest's memory is a file the front-end owns. Truncated after Ferry mapped
/// it, the next access past the new end raises SIGBUS, whose default action
/// kills the process and every other guest's port with it. A sealed memfd
/// (F_SEAL_SHRINK, which QEMU's memory-backend-memfd sets by default) cannot
/// shrink; an unsealed memfd or a hugetlbfs file can, and nothing obliges a
/// front-end to seal.
///
/// So mappings of such files are registered here. The SIGBUS handler looks the
/// faulting address up in a fixed table; when it lies in a registered mapping,
/// the handler maps anonymous zero pages over the whole mapping (one MAP_FIXED
/// mmap: the range keeps its address, so every pointer into it stays valid),
/// raises that mapping's fault flag and returns. The faulting instruction runs
/// again and reads zeros; the mapping's owner sees the flag and stops using the
/// memory (a vhost device marks itself broken). A SIGBUS anywhere else is
/// given back to the action installed before: a bug of ours still dies loudly.
///
/// The handler is async-signal-safe: it reads the table through raw pointers to
/// lock-free atomics allocated once and never freed, calls only mmap,
/// sigaction and raise (system calls), allocates nothing and takes no lock.
public enum BusErrorRecovery {
    /// Mappings watched at once: 64 vhost ports × 32 memory slots, twice over for
    /// a table being replaced while the old one is still mapped.
    public static let capacity = 4096

    /// A watched mapping; `unwatch` it before unmapping.
    public struct Watch: Sendable, Equatable {
        fileprivate let slot: Int
    }

    /// Starts watching `[base, base + length)`; nil when the table is full (the
    /// mapping then works as before, unprotected).
    public static func watch(_ base: UnsafeMutableRawPointer, length: Int) -> Watch? {
        let start = UInt(bitPattern: base)
        return writer.withLock { installed -> Watch? in
            if !installed {
                install()
                installed = true
            }
            for slot in 0..<capacity where table.starts[slot].load(ordering: .relaxed) == 0 {
                table.faults[slot].store(0, ordering: .relaxed)
                table.ends[slot].store(start + UInt(length), ordering: .relaxed)
                // Publishes end and flag with the start the handler looks for first.
                table.starts[slot].store(start, ordering: .releasing)
                return Watch(slot: slot)
            }
            return nil
        }
    }

    /// Stops watching; the mapping may be unmapped afterwards.
    public static func unwatch(_ watch: Watch) {
        writer.withLock { _ in table.starts[watch.slot].store(0, ordering: .releasing) }
    }

    /// True once an access to the watched mapping raised SIGBUS (it now holds zeros).
    public static func hasFaulted(_ watch: Watch) -> Bool {
        table.faults[watch.slot].load(ordering: .acquiring) != 0
    }

    // MARK: - The table and the handler

    /// Three arrays of atomic words and the action SIGBUS had before, allocated
    /// once and never freed: a trivial value the handler can read without
    /// retaining anything or an exclusivity check.
    fileprivate struct Table: @unchecked Sendable {
        let starts: UnsafeMutablePointer<Atomic<UInt>>
        let ends: UnsafeMutablePointer<Atomic<UInt>>
        let faults: UnsafeMutablePointer<Atomic<UInt32>>
        /// Written once, under the writer lock, before the handler is installed.
        let previous: UnsafeMutablePointer<sigaction>

        static func allocate() -> Table {
            let starts = UnsafeMutablePointer<Atomic<UInt>>.allocate(capacity: capacity)
            let ends = UnsafeMutablePointer<Atomic<UInt>>.allocate(capacity: capacity)
            let faults = UnsafeMutablePointer<Atomic<UInt32>>.allocate(capacity: capacity)
            for i in 0..<capacity {
                // SAFETY: i < capacity, the number of elements each array was allocated with.
                (starts + i).initialize(to: Atomic(0))
                (ends + i).initialize(to: Atomic(0))
                (faults + i).initialize(to: Atomic(0))
            }
            let previous = UnsafeMutablePointer<sigaction>.allocate(capacity: 1)
            // SAFETY: one sigaction, initialized in the one slot just allocated.
            previous.initialize(to: sigaction())
            return Table(starts: starts, ends: ends, faults: faults, previous: previous)
        }
    }

    fileprivate static let table = Table.allocate()
    /// Serialises writers (the handler never takes it) and says whether the handler is installed.
    private static let writer = Mutex(false)

    private static func install() {
        // The handler must never be the first to touch the table (a lazy global's
        // first access may allocate): touch it here.
        _ = table.starts
        var action = sigaction()
        action.__sigaction_handler.sa_sigaction = onBusError
        // SA_NODEFER is not set: a second SIGBUS inside the handler waits for it to return.
        action.sa_flags = SA_SIGINFO | SA_ONSTACK
        sigemptyset(&action.sa_mask)
        sigaction(SIGBUS, &action, table.previous)
    }
}

private func onBusError(_ signal: Int32, _ info: UnsafeMutablePointer<siginfo_t>?, _ context: UnsafeMutableRawPointer?) {
    let savedErrno = errno
    defer { errno = savedErrno }
    guard let info else { return giveBack(userSent: true) }
    // si_code > 0: raised by the kernel for a fault; ≤ 0: sent by kill or sigqueue.
    guard ferry_siginfo_code(info) > 0 else { return giveBack(userSent: true) }
    let address = UInt(bitPattern: ferry_siginfo_address(info))
    let table = BusErrorRecovery.table
    var slot = 0
    while slot < BusErrorRecovery.capacity {
        // SAFETY: slot < capacity, the length of each array.
        let start = table.starts[slot].load(ordering: .acquiring)
        if start != 0 && address >= start && address < table.ends[slot].load(ordering: .relaxed) {
            let length = Int(table.ends[slot].load(ordering: .relaxed) &- start)
            // SAFETY: [start, start + length) is a mapping Ferry made and still owns:
            // its owner unwatches it before unmapping. MAP_FIXED replaces its pages
            // in place; the address range stays Ferry's.
            let replaced = mmap(UnsafeMutableRawPointer(bitPattern: start), length, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0)
            if replaced != MAP_FAILED {
                table.faults[slot].store(1, ordering: .releasing)
                return
            }
            break
        }
        slot &+= 1
    }
    giveBack(userSent: false)
}

/// Puts the earlier action back. A fault then happens again when the handler
/// returns and meets that action; a signal someone sent is raised again (it is
/// blocked until the handler returns) to reach it.
private func giveBack(userSent: Bool) {
    _ = sigaction(SIGBUS, BusErrorRecovery.table.previous, nil)
    if userSent { _ = raise(SIGBUS) }
}
