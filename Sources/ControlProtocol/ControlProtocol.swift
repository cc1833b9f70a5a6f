/// Facts about the control socket's wire format that the server, `ferry ctl` and the tests
/// share. Each message is one JSON object on one line (docs/CONTROL.md).
public enum ControlProtocol {
    /// What `hello` exchanges. Version 1 is the first with a version at all: requests
    /// without `hello` are served as version 1 too, so clients written before it work on.
    public static let version = 1
    /// The oldest version this Ferry still serves; a `hello` naming an older one is refused.
    public static let oldestVersion = 1

    /// VLAN identifiers a request may name (IEEE 802.1Q §9.6: 0 means "no VLAN", 4095 is reserved).
    public static let vlanIDs: ClosedRange<Int> = 1...4094

    /// The most a capture keeps of a frame: pcap's record length field carries more, but no
    /// Ethernet frame Ferry switches is longer than this.
    public static let snapLengths: ClosedRange<Int> = 1...65535

    /// A capture's frame count travels as a pcap-era 32-bit signed number.
    public static let captureCounts: ClosedRange<Int> = 1...Int(Int32.max)
}

/// What a client names a request by; the reply carries it back unchanged. A client that
/// pipelines requests matches replies by it (they also come in request order).
public enum RequestID: Codable, Equatable, Sendable, CustomStringConvertible {
    case number(Int)
    case text(String)

    public init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer()
        if let number = try? value.decode(Int.self) {
            self = .number(number)
        } else {
            self = .text(try value.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var value = encoder.singleValueContainer()
        switch self {
        case .number(let n): try value.encode(n)
        case .text(let s): try value.encode(s)
        }
    }

    public var description: String {
        switch self {
        case .number(let n): String(n)
        case .text(let s): "\"\(s)\""
        }
    }
}
