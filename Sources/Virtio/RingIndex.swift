/// A split ring's free-running index (virtio 1.2 §2.7.6, §2.7.8): the driver's avail index,
/// the device's used index and every position Ferry keeps beside them count chains for ever
/// and wrap at 2^16, whatever the ring's size; a ring slot is the index masked by it. Kept
/// apart from a plain number so that a count is never taken for an index (or an index for a
/// descriptor id), and so that every step on one wraps, as the spec's arithmetic does.
public struct RingIndex: Equatable, Sendable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    public var rawValue: UInt16

    @inlinable
    public init(_ rawValue: UInt16) { self.rawValue = rawValue }

    @inlinable
    public init(integerLiteral value: UInt16) { rawValue = value }

    /// The index `count` chains later, modulo 2^16.
    @inlinable
    public static func &+ (index: RingIndex, count: UInt16) -> RingIndex { RingIndex(index.rawValue &+ count) }

    @inlinable
    public static func &+= (index: inout RingIndex, count: UInt16) { index.rawValue &+= count }

    /// How many chains `later` is ahead of `earlier`, modulo 2^16: more than the ring's size
    /// means one of them is not what it claims to be.
    @inlinable
    public static func &- (later: RingIndex, earlier: RingIndex) -> UInt16 { later.rawValue &- earlier.rawValue }

    /// The slot the index falls on in a ring of `mask + 1` entries.
    @inlinable
    func slot(_ mask: UInt16) -> Int { Int(rawValue & mask) }

    public var description: String { String(rawValue) }
}
