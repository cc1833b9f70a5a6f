import CFerry
import Glibc

/// One piece of a device-writable chain: host memory the device may write, or why the chain is bad.
@usableFromInline
enum ReceivePiece {
    case piece(UnsafeMutableRawPointer, length: Int)
    case failure(VirtqueueError)
}

/// Walks a device-writable (RX) chain as the host pieces its buffers translate to, with
/// every check a chain the device writes into must pass: the descriptor rules of
/// its layout's walker, each descriptor writable (virtio 1.2 §2.7.4, §2.8.6), each buffer inside
/// guest memory (one crossing regions comes back in several pieces). Push (`writeFrame`)
/// and the direct TAP read (`nextChain`) both walk chains with it. A piece is translated
/// only when asked for: a walk that stops once it has room enough never looks at, or
/// breaks the device over, a buffer it did not use.
@usableFromInline
struct ReceiveChainWalker<Source: DescriptorSource> {
    @usableFromInline var descriptors: Source
    /// What is left of the current descriptor's buffer.
    @usableFromInline var address: UInt64 = 0
    @usableFromInline var left: UInt32 = 0
    /// The current descriptor as the guest wrote it, for the error that names it.
    @usableFromInline var descriptorAddress: UInt64 = 0
    @usableFromInline var descriptorLength: UInt32 = 0

    @inlinable
    init(_ descriptors: Source) {
        self.descriptors = descriptors
    }

    /// The next piece, nil at the end of the chain.
    @inlinable
    mutating func next(memory: GuestMemory) -> ReceivePiece? {
        // A descriptor is never empty (both walkers refuse length 0): nothing left means the next one.
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

/// What listing a chain's pieces for a `readv` found.
@usableFromInline
enum ListedChain {
    /// The first `pieces` iovecs, `bytes` in all (at least what was wanted, or the whole chain).
    case listed(pieces: Int, bytes: Int)
    /// More pieces than the caller has room for.
    case tooManyPieces
    case failure(VirtqueueError)
}

extension ReceiveChainWalker {
    /// Lists the chain's pieces into `pieces` (at most `capacity`) until they hold `want` bytes or the chain ends.
    @inlinable
    mutating func list(into pieces: UnsafeMutablePointer<iovec>, capacity: Int, want: Int, memory mem: GuestMemory)
        -> ListedChain
    {
        var count = 0
        var bytes = 0
        while bytes < want, let step = next(memory: mem) {
            switch step {
            case .failure(let e):
                return .failure(e)
            case .piece(let p, let length):
                if count == capacity { return .tooManyPieces }
                pieces[count] = iovec(iov_base: p, iov_len: length)
                count &+= 1
                // No overflow: a chain has at most 32768 descriptors of at most 4 GiB each.
                bytes &+= length
            }
        }
        return .listed(pieces: count, bytes: bytes)
    }
}

/// The frame's first bytes, kept out of the guest's reach while the worker decided,
/// written into a lent chain before it is used: the virtio-net header's flags
/// keep only what the driver accepts, num_buffers is 1 (§5.1.6.4: one chain,
/// valid with or without MRG_RXBUF).
@usableFromInline
enum ReceivePrefix {
    @inlinable
    static func write(_ prefix: UnsafeMutableRawPointer, length prefixLength: Int, into pieces: UnsafePointer<iovec>,
                      count: Int, headerLength: Int, acceptedHeaderFlags: UInt8) {
        // SAFETY: `prefix` is the worker's private copy of prefixLength bytes (Worker.directPrefix, 32
        // bytes); the header's flags byte and num_buffers at 10 are written only when prefixLength >=
        // 12.
        if headerLength >= 12 && prefixLength >= 12 {
            prefix.storeBytes(of: prefix.load(as: UInt8.self) & acceptedHeaderFlags, as: UInt8.self)
            prefix.storeBytes(of: UInt16(1).littleEndian, toByteOffset: 10, as: UInt16.self)
        }
        var done = 0
        var i = 0
        while done < prefixLength && i < count {
            let take = min(prefixLength &- done, pieces[i].iov_len)
            // SAFETY: pieces[i] was translated inside guest memory when the chain was lent, in this burst.
            memcpy(pieces[i].iov_base, prefix + done, take)
            done &+= take
            i &+= 1
        }
    }

    /// Tells `writes` of the first `length` bytes of a lent chain: the
    /// caller's read and the prefix, all written by the time the chain is used.
    @inlinable
    static func mark<W: GuestWrites>(_ length: Int, of pieces: UnsafePointer<iovec>, count: Int, writes: W) {
        var marked = 0
        var i = 0
        while marked < length && i < count {
            let take = min(length &- marked, pieces[i].iov_len)
            // SAFETY: every piece of a lent chain is a translation of guest memory (a non-nil base) of iov_len >= take bytes.
            writes.written(pieces[i].iov_base.unsafelyUnwrapped, count: take)
            marked &+= take
            i &+= 1
        }
    }
}

extension ReceiveChainWalker where Source == DescriptorWalker {
    /// A split ring's chain from `head` in the descriptor table.
    @inlinable
    init(table: UnsafeMutableRawPointer, size: UInt32, head: DescriptorIndex) {
        self.init(DescriptorWalker(table: table, size: size, head: head))
    }
}
