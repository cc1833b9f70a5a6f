/// A port's number in the switch: what the forwarding database stores, what a
/// `PortSet` has a bit for, what the control socket calls `index`. A type of its
/// own so that a port number is never mixed up with a VLAN id, a queue number or
/// a tunnel endpoint, which are `UInt16`s too. Numbers are handed out by the switch
/// (below `PortSet.maxPorts`) and reused only after their port is removed.
@frozen
public struct PortIndex: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible,
    ExpressibleByIntegerLiteral {
    public var rawValue: UInt16

    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }
    @inlinable public init(_ rawValue: UInt16) { self.rawValue = rawValue }
    @inlinable public init(integerLiteral value: UInt16) { rawValue = value }

    /// A number known to fit (a position in a table of ports, a bit of a port set).
    @inlinable public init(truncating value: Int) { rawValue = UInt16(truncatingIfNeeded: value) }

    /// A number from outside (the control socket), if it is one a port can have.
    @inlinable public init?(exactly value: Int) {
        guard let raw = UInt16(exactly: value) else { return nil }
        rawValue = raw
    }

    @inlinable public static func < (a: PortIndex, b: PortIndex) -> Bool { a.rawValue < b.rawValue }

    public var description: String { String(rawValue) }
}

extension Int {
    /// The port's position in a table indexed by port number.
    @inlinable public init(_ port: PortIndex) { self.init(port.rawValue) }
}
