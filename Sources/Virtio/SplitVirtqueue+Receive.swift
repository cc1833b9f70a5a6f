import CFerry
import Glibc

/// The next chain of a device-writable (RX) queue, offered for someone else
/// (the kernel's `readv`) to write into.
public enum ReceiveChain {
    /// Head `head`; its buffers are the first `pieces` iovecs handed in, `bytes` in all.
    case chain(head: UInt16, pieces: Int, bytes: Int)
    /// The driver has no buffer posted.
    case none
    /// The chain holds less than was asked for, or in more pieces than the
    /// caller has room for. It stays available; the caller copies the usual way.
    case unsuitable
    /// The chain broke a rule: the queue is stopped with `error` set.
    case broken
}

// Receiving straight into the guest's buffers (TAP → guest with the kernel's
// copy only): `nextChain` walks the next available chain with the walker
// `writeFrame` uses (`ReceiveChainWalker`, every check included) and lists
// its buffers as iovecs, consuming nothing. The caller fills them, then
// `commitChain` writes the used entry, or it does nothing and the chain stays
// available for the next frame. `publishCommitted` publishes a burst's entries
// with one store and one notification decision.
extension SplitVirtqueue {
    /// Lists the buffers of the next available chain in `pieces` (at most
    /// `capacity`), stopping once they hold `want` bytes. Nothing is consumed.
    @inlinable
    public func nextChain(into pieces: UnsafeMutablePointer<iovec>, capacity: Int, want: Int) -> ReceiveChain {
        guard let mem = memory else { return isRunning ? .none : .unsuitable }
        return nextChain(into: pieces, capacity: capacity, want: want, memory: mem)
    }

    /// The memory table the queue translates through, for a caller that asks for
    /// many chains in a burst: loading it once and passing it to
    /// `nextChain(...memory:)` saves a retain and a release per frame.
    public var memoryTable: GuestMemory? { memory }

    /// As `nextChain(into:capacity:want:)`, translating through `mem` (this
    /// queue's `memoryTable`, loaded by the caller once per burst).
    @inlinable
    public func nextChain(into pieces: UnsafeMutablePointer<iovec>, capacity: Int, want: Int, memory mem: GuestMemory)
        -> ReceiveChain
    {
        // A stopped queue is the caller's to notice (not ready, or broken before).
        guard isRunning else { return .unsuitable }
        guard let available = availableCount() else { return .broken }
        guard available > 0 else { return .none }
        guard let h = head(at: lastAvail) else { return .broken }
        var chain = ReceiveChainWalker(table: descriptorTable, size: UInt32(mask) &+ 1, head: h)
        switch chain.list(into: pieces, capacity: capacity, want: want, memory: mem) {
        case .failure(let e):
            fail(e)
            return .broken
        case .tooManyPieces:
            return .unsuitable
        case .listed(let count, let bytes):
            return bytes < want ? .unsuitable : .chain(head: h.rawValue, pieces: count, bytes: bytes)
        }
    }

    /// Consumes the chain `nextChain` returned, `length` bytes of it written
    /// (virtio-net header included), after writing the first `prefixLength`
    /// bytes of the frame from `prefix` into it (`ReceivePrefix`): the header
    /// and whatever else the caller kept out of the guest's reach while deciding.
    @inlinable
    public func commitChain(head: UInt16, pieces: UnsafePointer<iovec>, count: Int, length: Int,
                            prefix: UnsafeMutableRawPointer, prefixLength: Int) {
        commitChain(head: head, pieces: pieces, count: count, length: length, prefix: prefix,
                    prefixLength: prefixLength, writes: UnloggedWrites())
    }

    /// As `commitChain(head:pieces:count:length:prefix:prefixLength:)`, marking
    /// the chain's `length` bytes (the caller's read and the prefix) through
    /// `writes`: a caller that writes while the dirty log is on passes `LoggedWrites`.
    @inlinable
    public func commitChain<W: GuestWrites>(head: UInt16, pieces: UnsafePointer<iovec>, count: Int, length: Int,
                                            prefix: UnsafeMutableRawPointer, prefixLength: Int, writes: W) {
        ReceivePrefix.write(prefix, length: prefixLength, into: pieces, count: count,
                            headerLength: configuration.headerLength,
                            acceptedHeaderFlags: configuration.acceptedHeaderFlags)
        ReceivePrefix.mark(length, of: pieces, count: count, writes: writes)
        // The caller hands back the head `nextChain` returned, which `head(at:)` checked.
        writeUsed(at: usedIndex &+ pendingUsed, id: DescriptorIndex(checked: head),
                  length: UInt32(truncatingIfNeeded: length))
        pendingUsed &+= 1
        lastAvail &+= 1
    }

    /// Publishes every chain committed since the last call.
    @inlinable
    public func publishCommitted() {
        let n = pendingUsed
        pendingUsed = 0
        if isRunning { publishUsed(n) }
    }
}
