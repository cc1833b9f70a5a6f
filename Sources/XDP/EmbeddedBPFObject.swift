/// A BPF object compiled at build time and carried inside the binary:
/// BPFObjectPlugin compiles each bpf/*.bpf.c and generates one static
/// property per object (`EmbeddedBPFObject.ferrySteer`), its bytes as hex.
struct EmbeddedBPFObject: Sendable {
    /// The source's stem (`ferry_steer`); also the name libbpf gives the object.
    let name: String
    /// Two hex digits per byte, lines separated by newlines (nothing else).
    let hex: StaticString

    /// The object file, decoded afresh on every call (it is read once per attach).
    var bytes: [UInt8] {
        hex.withUTF8Buffer { text in
            var bytes = [UInt8]()
            bytes.reserveCapacity(text.count / 2)
            var high: UInt8?
            for character in text where character != UInt8(ascii: "\n") {
                guard let nibble = Self.nibble(character) else {
                    preconditionFailure("BPFEmbedder wrote \(character) into the hex of \(name)")
                }
                if let pending = high {
                    bytes.append(pending << 4 | nibble)
                    high = nil
                } else {
                    high = nibble
                }
            }
            precondition(high == nil, "BPFEmbedder wrote an odd number of hex digits for \(name)")
            return bytes
        }
    }

    private static func nibble(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): character - UInt8(ascii: "a") + 10
        default: nil
        }
    }
}
