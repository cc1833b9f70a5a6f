/// The three parts of a split ring (virtio 1.2 §2.7) and of a packed ring (§2.8).
public enum RingPart: String, Sendable {
    case descriptorTable = "descriptor table"
    case availRing = "avail ring"
    case usedRing = "used ring"
    case descriptorRing = "packed descriptor ring"
    case driverEventArea = "driver event suppression area"
    case deviceEventArea = "device event suppression area"
}

/// What a guest did wrong on a ring. Kept free of reference-counted payloads:
/// the ring walker passes these around on the hot path. Any of these marks the device broken:
/// a well-behaved driver never produces one (virtio 1.2 §2.7, §2.8).
public enum VirtqueueError: Error, Equatable, Sendable, CustomStringConvertible {
    case sizeInvalid(UInt32)
    case ringNotMapped(RingPart, address: UInt64)
    case availIndexJump(availIndex: UInt16, lastSeen: UInt16, size: UInt16)
    case headOutOfRange(UInt16, size: UInt16)
    case nextOutOfRange(UInt16, size: UInt16)
    case chainTooLong(hops: Int)
    case descriptorAddressInvalid(address: UInt64, length: UInt32)
    case zeroLengthDescriptor
    case indirectWithNext
    case nestedIndirect
    case indirectLengthInvalid(UInt32)
    case writableInDriverChain
    case readableInDeviceChain
    case frameTooLong(UInt64)
    /// A packed ring's size outside 1...32768 (§2.8 needs no power of two).
    case packedSizeInvalid(UInt32)
    /// A packed ring's base position (SET_VRING_BASE bits 0-14) at or past its size.
    case basePositionOutOfRange(UInt16, size: UInt16)
    /// A packed chain runs on into a descriptor its driver has not made available
    /// in this lap of the ring (its AVAIL/USED bits disagree with the wrap counter).
    case chainRunsIntoUnavailable(position: UInt16)

    public var description: String {
        switch self {
        case .sizeInvalid(let n): "ring size \(n) is not a power of two in 1...32768"
        case .ringNotMapped(let what, let a): "\(what.rawValue) at front-end address 0x\(String(a, radix: 16)) is not in shared memory"
        case .availIndexJump(let a, let l, let s): "avail index jumped from \(l) to \(a), more than the ring size \(s)"
        case .headOutOfRange(let h, let s): "chain head \(h) is outside the ring of \(s)"
        case .nextOutOfRange(let n, let s): "descriptor next \(n) is outside its table of \(s)"
        case .chainTooLong(let h): "descriptor chain runs past \(h) hops (a loop)"
        case .descriptorAddressInvalid(let a, let l): "descriptor buffer 0x\(String(a, radix: 16))+\(l) is outside guest memory"
        case .zeroLengthDescriptor: "descriptor with length 0"
        case .indirectWithNext: "indirect descriptor also has NEXT set"
        case .nestedIndirect: "indirect table inside an indirect table"
        case .indirectLengthInvalid(let l): "indirect table length \(l) is not a non-zero multiple of 16"
        case .writableInDriverChain: "device-writable descriptor in a TX chain"
        case .readableInDeviceChain: "device-readable descriptor in an RX chain"
        case .frameTooLong(let n): "frame of \(n) bytes is longer than any frame Ferry accepts"
        case .packedSizeInvalid(let n): "packed ring size \(n) is outside 1...32768"
        case .basePositionOutOfRange(let p, let s): "ring base position \(p) is outside the packed ring of \(s)"
        case .chainRunsIntoUnavailable(let p): "packed chain runs on into descriptor \(p), which the driver has not made available"
        }
    }
}
