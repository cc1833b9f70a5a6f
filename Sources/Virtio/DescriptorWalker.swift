/// One buffer of a descriptor chain, as loaded (once) from guest memory.
@usableFromInline
struct Descriptor {
    @usableFromInline var address: UInt64
    @usableFromInline var length: UInt32
    @usableFromInline var writable: Bool

    @inlinable init(address: UInt64, length: UInt32, writable: Bool) {
        self.address = address
        self.length = length
        self.writable = writable
    }
}

/// The buffers of one descriptor chain, one at a time, each checked as the ring
/// layout demands: a split ring's table walk (`DescriptorWalker`) or a packed
/// ring's run of descriptors (`PackedDescriptorWalker`). Callers are generic
/// over it, so each layout gets its own specialised copy and no dynamic dispatch.
@usableFromInline
protocol DescriptorSource {
    /// The next buffer, nil at the end of the chain, or an error.
    mutating func next(memory: GuestMemory) -> Result<Descriptor, VirtqueueError>?
}

/// Follows a split ring's descriptor chain, direct or through one indirect table, with a hop
/// budget equal to the table size so a looping chain ends (virtio 1.2 §2.7.5.3).
/// Each descriptor's fields are loaded once: the guest may rewrite the table
/// while we read it, so a checked value is never loaded again.
@usableFromInline
struct DescriptorWalker: DescriptorSource {
    @usableFromInline var table: UnsafeMutableRawPointer
    @usableFromInline var tableSize: UInt32
    @usableFromInline var index: UInt32
    @usableFromInline var hops: UInt32 = 0
    @usableFromInline var indirect = false
    @usableFromInline var finished = false

    @inlinable
    init(table: UnsafeMutableRawPointer, size: UInt32, head: DescriptorIndex) {
        self.table = table
        self.tableSize = size
        self.index = UInt32(head.rawValue)
    }

    /// The next buffer, nil at the end of the chain, or an error.
    @inlinable
    mutating func next(memory: GuestMemory) -> Result<Descriptor, VirtqueueError>? {
        while !finished {
            if index >= tableSize {
                return .failure(.nextOutOfRange(UInt16(truncatingIfNeeded: index), size: UInt16(truncatingIfNeeded: tableSize)))
            }
            hops &+= 1
            if hops > tableSize { return .failure(.chainTooLong(hops: Int(hops))) }
            // SAFETY: index < tableSize (tested at the top of the loop), and `table` is tableSize
            // 16-byte descriptors translated inside guest memory: the ring's table by start() (size
            // entries), or an indirect table translated just below for len bytes (tableSize = len /
            // 16).
            let d = table + Int(index) &* SplitRingLayout.descriptorSize
            let addr = d.loadUnaligned(as: UInt64.self)
            let len = d.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
            let flags = d.loadUnaligned(fromByteOffset: 12, as: UInt16.self)
            let next = d.loadUnaligned(fromByteOffset: 14, as: UInt16.self)
            if flags & SplitRingLayout.descFlagIndirect != 0 {
                if indirect { return .failure(.nestedIndirect) }
                if flags & SplitRingLayout.descFlagNext != 0 { return .failure(.indirectWithNext) }
                if len == 0 || len % 16 != 0 || len / 16 > SplitRingLayout.maxSize {
                    return .failure(.indirectLengthInvalid(len))
                }
                guard let t = memory.translate(GuestAddress(addr), length: len) else {
                    return .failure(.descriptorAddressInvalid(address: addr, length: len))
                }
                table = t
                tableSize = len / 16
                index = 0
                hops = 0
                indirect = true
                continue
            }
            if len == 0 { return .failure(.zeroLengthDescriptor) }
            if flags & SplitRingLayout.descFlagNext == 0 {
                finished = true
            } else {
                index = UInt32(next)
            }
            return .success(Descriptor(address: addr, length: len, writable: flags & SplitRingLayout.descFlagWrite != 0))
        }
        return nil
    }
}
