import CFerry

/// Follows one chain of a packed ring (virtio 1.2 §2.8, "Next Flag: Descriptor
/// Chaining"): consecutive descriptors from the head while NEXT is set, wrapping
/// at the ring's end, ending in at most one descriptor that names an indirect
/// table ("Indirect Flag"), walked entry by entry.
/// Each descriptor's fields are loaded once.
///
/// The driver writes a chain's later descriptors before it makes the head
/// available (and sets every flag in each of them, same section), so each must
/// already be available in its lap: one
/// that is not means the wrap counters or flags lie, and breaks the queue. The
/// hop budget is what of the ring is not in flight, so a chain can neither run
/// round onto its own head nor into descriptors the device has not returned.
/// The buffer id comes from the chain's last ring descriptor and is only ever
/// echoed back to the driver, never used to index anything.
@usableFromInline
struct PackedDescriptorWalker: DescriptorSource {
    @usableFromInline let ring: UnsafeMutableRawPointer
    @usableFromInline let ringSize: UInt32
    /// Ring descriptors this chain may take.
    @usableFromInline let budget: UInt32
    /// The next ring position to read, and the driver's wrap counter for its lap.
    @usableFromInline var place: PackedRingCursor
    /// The head's flags, loaded (acquiring) by the caller that found it available.
    @usableFromInline let headFlags: UInt16
    /// Ring descriptors read so far: how far the chain reaches in the ring.
    @usableFromInline var ringDescriptors: UInt32 = 0
    @usableFromInline var bufferID: UInt16 = 0
    /// The ring part of the chain is over (its last descriptor, or an indirect one, was read).
    @usableFromInline var ringDone = false
    @usableFromInline var table: UnsafeMutableRawPointer? = nil
    @usableFromInline var tableSize: UInt32 = 0
    @usableFromInline var tableIndex: UInt32 = 0

    @inlinable
    init(ring: UnsafeMutableRawPointer, size: UInt32, from head: PackedRingCursor, headFlags: UInt16,
         budget: UInt32) {
        self.ring = ring
        ringSize = size
        place = head
        self.headFlags = headFlags
        self.budget = budget
    }

    /// The position after the chain and the wrap counter there, once the ring part is done.
    @inlinable
    var end: PackedRingCursor { place }

    @inlinable
    mutating func next(memory: GuestMemory) -> Result<Descriptor, VirtqueueError>? {
        while true {
            if let t = table {
                guard tableIndex < tableSize else { return nil }
                // SAFETY: tableIndex < tableSize, and the table's tableSize * 16 bytes were translated.
                let d = t + Int(tableIndex) &* PackedRingLayout.descriptorSize
                tableIndex &+= 1
                let addr = d.loadUnaligned(as: UInt64.self)
                let len = d.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
                let flags = d.loadUnaligned(fromByteOffset: 14, as: UInt16.self)
                // §2.8 "Indirect Flag": WRITE is the only valid flag of an entry; NEXT means
                // nothing there, and a nested table is a driver setting a reserved bit.
                if flags & PackedRingLayout.flagIndirect != 0 { return .failure(.nestedIndirect) }
                if len == 0 { return .failure(.zeroLengthDescriptor) }
                return .success(Descriptor(address: addr, length: len,
                                           writable: flags & PackedRingLayout.flagWrite != 0))
            }
            if ringDone { return nil }
            let d: (address: UInt64, length: UInt32, flags: UInt16)
            switch readRingDescriptor() {
            case .failure(let e): return .failure(e)
            case .success(let value): d = value
            }
            if d.flags & PackedRingLayout.flagIndirect != 0 {
                let len = d.length
                if len == 0 || len % 16 != 0 || len / 16 > PackedRingLayout.maxSize {
                    return .failure(.indirectLengthInvalid(len))
                }
                guard let t = memory.translate(GuestAddress(d.address), length: len) else {
                    return .failure(.descriptorAddressInvalid(address: d.address, length: len))
                }
                table = t
                tableSize = len / 16
                continue
            }
            if d.length == 0 { return .failure(.zeroLengthDescriptor) }
            return .success(Descriptor(address: d.address, length: d.length,
                                       writable: d.flags & PackedRingLayout.flagWrite != 0))
        }
    }

    /// Reads the ring descriptors of the chain that are left without looking at
    /// their buffers: a caller that stopped early (its frame fitted) still has
    /// to know where the chain ends and its buffer id.
    @inlinable
    mutating func skipRest() -> VirtqueueError? {
        while !ringDone {
            if case .failure(let e) = readRingDescriptor() { return e }
        }
        return nil
    }

    @inlinable
    mutating func readRingDescriptor() -> Result<(address: UInt64, length: UInt32, flags: UInt16), VirtqueueError> {
        if ringDescriptors == budget { return .failure(.chainTooLong(hops: Int(ringDescriptors) &+ 1)) }
        // SAFETY: position < ringSize, and the ring's ringSize * 16 bytes were translated at start.
        let d = ring + Int(place.position) &* PackedRingLayout.descriptorSize
        let flags: UInt16
        if ringDescriptors == 0 {
            flags = headFlags
        } else {
            // Relaxed: ordered behind the head's acquire load, which the driver stored last.
            flags = ferry_load_relaxed_u16(d + 14)
            if !PackedRingLayout.isAvailable(flags, wrap: place.wrap) {
                return .failure(.chainRunsIntoUnavailable(position: place.position))
            }
        }
        let addr = d.loadUnaligned(as: UInt64.self)
        let len = d.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        bufferID = d.loadUnaligned(fromByteOffset: 12, as: UInt16.self)
        ringDescriptors &+= 1
        place.advance(ringSize: ringSize)
        let indirect = flags & PackedRingLayout.flagIndirect != 0
        if indirect && flags & PackedRingLayout.flagNext != 0 { return .failure(.indirectWithNext) }
        if indirect || flags & PackedRingLayout.flagNext == 0 { ringDone = true }
        return .success((addr, len, flags))
    }
}
