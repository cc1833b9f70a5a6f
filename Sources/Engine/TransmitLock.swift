import CFerry

/// The spin lock of a port's transmit queue that several workers share: one
/// word of the switch's entry for the port (`SwitchPort.transmitLocks`, a word
/// per queue), which lives as long as the port is in any worker's table (a
/// port goes only while the workers are parked). Sendable by design: every
/// worker of the queue holds a copy, and every access to the word is atomic.
public struct TransmitLock: @unchecked Sendable {
    @usableFromInline let word: UnsafeMutablePointer<UInt32>

    /// The lock in `word`, a lock word its owner allocated and zeroed.
    public init(word: UnsafeMutablePointer<UInt32>) { self.word = word }

    /// Spins until this worker holds the queue.
    @inlinable
    public func acquire() {
        // SAFETY: `word` is a live lock word (the type's comment): its owner's allocation
        // outlives every worker table naming it; the atomics only read and write its 4 bytes.
        while ferry_exchange_acquire_u32(word, 1) != 0 {
            while ferry_load_relaxed_u32(word) != 0 { ferry_cpu_relax() }
        }
    }

    /// Gives the queue to the next worker; its writes are visible to it first.
    @inlinable
    public func release() {
        // SAFETY: as in `acquire`: a live lock word.
        ferry_store_release_u32(word, 0)
    }
}
