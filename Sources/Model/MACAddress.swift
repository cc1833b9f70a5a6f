/// A 48-bit Ethernet address.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    public var bytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

    public init(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8, _ b4: UInt8, _ b5: UInt8) {
        bytes = (b0, b1, b2, b3, b4, b5)
    }

    /// Parses `aa:bb:cc:dd:ee:ff` (or with dashes): six pairs of hex digits, nothing else.
    public init?(_ text: String) {
        // Empty parts are kept so that "aa::bb:cc:dd:ee:ff" is refused, and the digits are
        // checked one by one because UInt8(_:radix:) also takes a sign ("+a").
        let parts = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == ":" || $0 == "-" })
        guard parts.count == 6 else { return nil }
        var b: [UInt8] = []
        for p in parts {
            guard p.utf8.count == 2, p.utf8.allSatisfy(Self.isHexDigit), let v = UInt8(p, radix: 16) else { return nil }
            b.append(v)
        }
        bytes = (b[0], b[1], b[2], b[3], b[4], b[5])
    }

    private static func isHexDigit(_ c: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(c)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(c)
    }

    public static let broadcast = MACAddress(0xff, 0xff, 0xff, 0xff, 0xff, 0xff)

    public var array: [UInt8] { [bytes.0, bytes.1, bytes.2, bytes.3, bytes.4, bytes.5] }

    public var isMulticast: Bool { bytes.0 & 1 == 1 }

    public static func == (a: Self, b: Self) -> Bool { a.array == b.array }
    public func hash(into h: inout Hasher) { h.combine(array) }

    public var description: String {
        array.map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined(separator: ":")
    }
}
