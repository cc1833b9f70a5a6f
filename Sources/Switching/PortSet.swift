/// A set of switch ports as a bitmask: bit n is port n. The switch has at most
/// 64 ports, so a flood set is one register and building it allocates nothing.
public struct PortSet: Equatable, Hashable, Sendable, Sequence, CustomStringConvertible {
    public static let maxPorts = 64

    public var bits: UInt64

    @inlinable public init(bits: UInt64 = 0) { self.bits = bits }

    public init(_ ports: some Sequence<UInt16>) {
        bits = 0
        for p in ports { insert(p) }
    }

    public static let empty = PortSet()

    @inlinable
    public func contains(_ port: UInt16) -> Bool {
        port < Self.maxPorts && bits & (1 << UInt64(port)) != 0
    }

    /// Ports past `maxPorts` are a bug of ours: the switch refuses to create them.
    @inlinable
    public mutating func insert(_ port: UInt16) {
        precondition(port < Self.maxPorts, "port index beyond PortSet.maxPorts")
        bits |= 1 << UInt64(port)
    }

    @inlinable
    public mutating func remove(_ port: UInt16) {
        if port < Self.maxPorts { bits &= ~(1 << UInt64(port)) }
    }

    @inlinable
    public func removing(_ port: UInt16) -> PortSet {
        var s = self
        s.remove(port)
        return s
    }

    @inlinable public var count: Int { bits.nonzeroBitCount }
    @inlinable public var isEmpty: Bool { bits == 0 }

    public struct Iterator: IteratorProtocol {
        @usableFromInline var rest: UInt64
        @inlinable init(rest: UInt64) { self.rest = rest }

        @inlinable
        public mutating func next() -> UInt16? {
            guard rest != 0 else { return nil }
            let port = UInt16(truncatingIfNeeded: rest.trailingZeroBitCount)
            rest &= rest &- 1
            return port
        }
    }

    @inlinable public func makeIterator() -> Iterator { Iterator(rest: bits) }

    public var description: String { "[" + map(String.init).joined(separator: ",") + "]" }
}
