/// One piece of a device-writable chain: host memory the device may write, or why the chain is bad.
@usableFromInline
enum ReceivePiece {
    case piece(UnsafeMutableRawPointer, length: Int)
    case failure(VirtqueueError)
}

/// Walks a device-writable (RX) chain as the host pieces its buffers translate to, with
/// every check a chain the device writes into must pass: the descriptor rules of
/// `DescriptorWalker`, each descriptor writable (virtio 1.2 §2.7.4), each buffer inside
/// guest memory (one crossing regions comes back in several pieces). Push (`writeFrame`)
/// and the direct TAP read (`nextChain`) both walk chains with it. A piece is translated
/// only when asked for: a walk that stops once it has room enough never looks at, or
/// breaks the device over, a buffer it did not use.
@usableFromInline
struct ReceiveChainWalker {
    @usableFromInline var descriptors: DescriptorWalker
    /// What is left of the current descriptor's buffer.
    @usableFromInline var address: UInt64 = 0
    @usableFromInline var left: UInt32 = 0
    /// The current descriptor as the guest wrote it, for the error that names it.
    @usableFromInline var descriptorAddress: UInt64 = 0
    @usableFromInline var descriptorLength: UInt32 = 0

    @inlinable
    init(table: UnsafeMutableRawPointer, size: UInt32, head: UInt16) {
        descriptors = DescriptorWalker(table: table, size: size, head: head)
    }

    /// The next piece, nil at the end of the chain.
    @inlinable
    mutating func next(memory: GuestMemory) -> ReceivePiece? {
        // A descriptor is never empty (DescriptorWalker refuses length 0): nothing left means the next one.
        if left == 0 {
            guard let step = descriptors.next(memory: memory) else { return nil }
            let d: Descriptor
            switch step {
            case .failure(let e): return .failure(e)
            case .success(let value): d = value
            }
            if !d.writable { return .failure(.readableInDeviceChain) }
            address = d.address
            left = d.length
            descriptorAddress = d.address
            descriptorLength = d.length
        }
        guard let (p, piece) = memory.translatePiece(GuestAddress(address), length: left) else {
            return .failure(.descriptorAddressInvalid(address: descriptorAddress, length: descriptorLength))
        }
        // No overflow: translatePiece checked address + left, and piece <= left.
        address &+= UInt64(piece)
        left &-= piece
        return .piece(p, length: Int(piece))
    }
}
