import Synchronization

extension Atomic where Value == UInt64 {
    /// Adds `n` to a counter that the calling thread alone writes (a worker's
    /// own counts), which other threads only read. `add` compiles to a locked
    /// compare-and-swap loop with this toolchain, a full barrier wherever it
    /// stands: ~4 % of W1's worker samples sat on one per pass
    /// (docs/PERFORMANCE.md, "W1: a cheaper worker per frame"). One writer
    /// needs no read-modify-write: a relaxed load and a relaxed store (plain
    /// moves on x86-64), and a reader still sees a whole value, never a torn one.
    /// A counter that two threads write (a TAP's `bufferedFrames`, pulled by
    /// the worker of each of its queues) must keep `add`.
    @inlinable @inline(__always)
    public func addAsOnlyWriter(_ n: UInt64) {
        store(load(ordering: .relaxed) &+ n, ordering: .relaxed)
    }
}
