/// The ones'-complement sum of 16-bit big-endian words (RFC 1071), folded but
/// not complemented: a checksum is `~onesComplementSum(...)`, and a block that
/// carries a correct one sums to 0xFFFF.
public func onesComplementSum(_ bytes: ArraySlice<UInt8>) -> UInt16 {
    var sum: UInt32 = 0
    var i = bytes.startIndex
    while i < bytes.endIndex {
        let high = UInt32(bytes[i]) << 8
        let low = i + 1 < bytes.endIndex ? UInt32(bytes[i + 1]) : 0
        sum += high | low
        i += 2
    }
    while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
    return UInt16(sum)
}
