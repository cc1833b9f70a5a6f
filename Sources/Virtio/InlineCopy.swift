import Glibc

/// A copy of a few hundred bytes at most done in line, with 16-, 8-, 4-, 2- and 1-byte
/// moves, rather than a call into the C library: a 64-byte frame is then four loads and
/// four stores in the caller's stream of stores, with no call, no size dispatch and no
/// spill around it. Longer copies go to `memcpy`, whose wide moves pay for the call.
/// Every move stays inside `[source, source + count)` and `[destination, destination +
/// count)`: the tail is one move that ends exactly at the end, overlapping the move before.
@usableFromInline
enum InlineCopy {
    /// Beyond this many bytes the C library's copy is used.
    @usableFromInline static let longest = 256

    @inlinable @inline(__always)
    static func copy(_ count: Int, from source: UnsafeRawPointer, to destination: UnsafeMutableRawPointer) {
        if count >= 16 {
            if count > longest {
                // SAFETY: the caller's ranges, count bytes each (the function's contract, checked by its callers).
                memcpy(destination, source, count)
                return
            }
            var done = 0
            let last = count &- 16
            while done < last {
                // SAFETY: done < count - 16, so the 16 bytes at done are inside both ranges.
                destination.storeBytes(of: source.loadUnaligned(fromByteOffset: done, as: SIMD16<UInt8>.self),
                                       toByteOffset: done, as: SIMD16<UInt8>.self)
                done &+= 16
            }
            // SAFETY: count >= 16, so [count - 16, count) is inside both ranges.
            destination.storeBytes(of: source.loadUnaligned(fromByteOffset: last, as: SIMD16<UInt8>.self),
                                   toByteOffset: last, as: SIMD16<UInt8>.self)
        } else if count >= 8 {
            // SAFETY: 8 <= count < 16: the moves at 0 and count - 8 cover the range, both inside it.
            let head = source.loadUnaligned(as: UInt64.self)
            let tail = source.loadUnaligned(fromByteOffset: count &- 8, as: UInt64.self)
            destination.storeBytes(of: head, as: UInt64.self)
            destination.storeBytes(of: tail, toByteOffset: count &- 8, as: UInt64.self)
        } else if count >= 4 {
            // SAFETY: 4 <= count < 8, as above with 4-byte moves.
            let head = source.loadUnaligned(as: UInt32.self)
            let tail = source.loadUnaligned(fromByteOffset: count &- 4, as: UInt32.self)
            destination.storeBytes(of: head, as: UInt32.self)
            destination.storeBytes(of: tail, toByteOffset: count &- 4, as: UInt32.self)
        } else if count >= 2 {
            // SAFETY: 2 <= count < 4, as above with 2-byte moves.
            let head = source.loadUnaligned(as: UInt16.self)
            let tail = source.loadUnaligned(fromByteOffset: count &- 2, as: UInt16.self)
            destination.storeBytes(of: head, as: UInt16.self)
            destination.storeBytes(of: tail, toByteOffset: count &- 2, as: UInt16.self)
        } else if count == 1 {
            // SAFETY: count is 1: one byte, inside both ranges.
            destination.storeBytes(of: source.load(as: UInt8.self), as: UInt8.self)
        }
    }
}
