/// Reads a fuzzer's bytes as a stream of small decisions. Past the end every read
/// yields zero, so any input, even an empty one, decodes to some sequence of operations.
public struct FuzzInput {
    private let bytes: UnsafeRawBufferPointer
    private var offset = 0

    public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// True once every byte was read.
    public var isExhausted: Bool { offset >= bytes.count }

    /// Bytes not read yet.
    public var remaining: Int { max(bytes.count - offset, 0) }

    public mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func bool() -> Bool { byte() & 1 != 0 }

    /// Little-endian, as the wire formats under test are.
    public mutating func uint16() -> UInt16 { UInt16(byte()) | UInt16(byte()) << 8 }

    public mutating func uint32() -> UInt32 { UInt32(uint16()) | UInt32(uint16()) << 16 }

    public mutating func uint64() -> UInt64 { UInt64(uint32()) | UInt64(uint32()) << 32 }

    /// A value below `bound` (which must be positive).
    public mutating func below(_ bound: Int) -> Int { Int(uint16()) % bound }

    /// Up to `count` raw bytes (fewer at the end of the input).
    public mutating func take(_ count: Int) -> UnsafeRawBufferPointer {
        let n = min(count, remaining)
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n])
    }

    /// A 64-bit quantity drawn from the shapes that break address arithmetic: small
    /// offsets near `base`, values near the top of the range, and anything at all.
    public mutating func address(near base: UInt64) -> UInt64 {
        switch byte() % 4 {
        case 0: return base &+ UInt64(uint16())
        case 1: return base &- UInt64(byte())
        case 2: return UInt64.max &- UInt64(uint16())
        default: return uint64()
        }
    }
}

/// Builds the bytes a `FuzzInput` reads back, for seeds written by the unit tests.
public struct FuzzInputBuilder {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func byte(_ value: UInt8) { bytes.append(value) }

    public mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }

    public mutating func uint16(_ value: UInt16) { bytes += [UInt8(value & 0xff), UInt8(value >> 8)] }

    public mutating func uint32(_ value: UInt32) {
        uint16(UInt16(truncatingIfNeeded: value))
        uint16(UInt16(truncatingIfNeeded: value >> 16))
    }

    public mutating func uint64(_ value: UInt64) {
        uint32(UInt32(truncatingIfNeeded: value))
        uint32(UInt32(truncatingIfNeeded: value >> 32))
    }

    /// `below(bound)` reads this value back.
    public mutating func below(_ value: Int) { uint16(UInt16(value)) }

    public mutating func raw(_ value: [UInt8]) { bytes += value }

    /// `address(near:)` reads `value` back exactly (the "anything at all" shape).
    public mutating func address(_ value: UInt64) {
        byte(3)
        uint64(value)
    }
}

/// A property the code under test broke: libFuzzer records the input as a crash.
public func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                      file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError("fuzz finding: \(message())", file: file, line: line) }
}
