import Glibc

// Receiving straight into the guest's buffers (TAP → guest, the kernel's copy
// only), as `SplitVirtqueue+Receive` does: `nextChain` walks the chain at the
// read position with every push check and lists its buffers, consuming
// nothing; `commitChain` takes it once the caller filled it; `publishCommitted`
// marks a burst's chains used together.
extension PackedVirtqueue {
    /// Lists the buffers of the next available chain in `pieces` (at most
    /// `capacity`), stopping once they hold `want` bytes. Nothing is taken.
    /// The chain's head is reported as its buffer id.
    @inlinable
    public func nextChain(into pieces: UnsafeMutablePointer<iovec>, capacity: Int, want: Int, memory mem: GuestMemory)
        -> ReceiveChain
    {
        guard isRunning else { return .unsuitable }
        guard let flags = headFlags() else { return .none }
        var walker = ReceiveChainWalker(chain(headFlags: flags))
        switch walker.list(into: pieces, capacity: capacity, want: want, memory: mem) {
        case .failure(let e):
            fail(e)
            return .broken
        case .tooManyPieces:
            return .unsuitable
        case .listed(let count, let bytes):
            if bytes < want { return .unsuitable }
            if let e = walker.descriptors.skipRest() {
                fail(e)
                return .broken
            }
            lentEnd = walker.descriptors.end
            lentDescriptors = walker.descriptors.ringDescriptors
            return .chain(head: walker.descriptors.bufferID, pieces: count, bytes: bytes)
        }
    }

    /// Takes the chain `nextChain` lent last, `length` bytes of it written
    /// (virtio-net header included), after writing the first `prefixLength`
    /// bytes of the frame from `prefix` into it (`ReceivePrefix`).
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
        precondition(lentDescriptors > 0, "commitChain without a chain lent by nextChain")
        ReceivePrefix.write(prefix, length: prefixLength, into: pieces, count: count,
                            headerLength: configuration.headerLength,
                            acceptedHeaderFlags: configuration.acceptedHeaderFlags)
        ReceivePrefix.mark(length, of: pieces, count: count, writes: writes)
        take(id: head, descriptors: lentDescriptors, end: lentEnd, written: length)
        lentDescriptors = 0
    }

    /// Marks every chain committed since the last call used.
    @inlinable
    public func publishCommitted() {
        if isRunning {
            publishUsed()
        } else {
            pendingCount = 0
            inFlight = 0
        }
    }
}
