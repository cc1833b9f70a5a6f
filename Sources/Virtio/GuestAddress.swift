/// A guest-physical address, as descriptors carry them (virtio 1.2 §2.7.5).
public struct GuestAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    @inlinable public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    @inlinable public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "gpa 0x" + String(rawValue, radix: 16) }
}

/// An address in the front-end process's own address space, as SET_VRING_ADDR
/// carries ring addresses (vhost-user.rst: "front-end virtual addresses").
public struct FrontEndAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    @inlinable public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    @inlinable public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "front-end va 0x" + String(rawValue, radix: 16) }
}
