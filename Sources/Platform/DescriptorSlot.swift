/// A place for at most one owned descriptor, as a class can hold one and
/// still read its number: a `~Copyable` optional in a class cannot be looked
/// into without taking it out. Putting a new descriptor in (or none) closes
/// the one that was there; so does the slot going away.
public final class DescriptorSlot: @unchecked Sendable {
    private var owned: FileDescriptor?
    /// The descriptor's number for system calls, -1 when the slot is empty.
    public private(set) var rawValue: Int32 = -1

    public init() {}

    public init(_ fd: consuming FileDescriptor) {
        rawValue = fd.rawValue
        owned = consume fd
    }

    public var isEmpty: Bool { rawValue < 0 }

    /// Puts `fd` in, closing what was there.
    public func replace(with fd: consuming FileDescriptor?) {
        rawValue = fd.rawValueOrNegative
        owned = consume fd
    }

    /// Takes the descriptor out, leaving the slot empty; nil when it was empty.
    public func take() -> FileDescriptor? {
        rawValue = -1
        return owned.take()
    }

    /// Closes the descriptor now, if there is one.
    public func close() { replace(with: nil) }
}

extension Optional where Wrapped == FileDescriptor {
    /// The descriptor's number, or -1 for none, without taking it out.
    public var rawValueOrNegative: Int32 {
        switch self {
        case .some(let fd): fd.rawValue
        case .none: -1
        }
    }
}
