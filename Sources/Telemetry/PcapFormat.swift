/// Classic pcap, as tcpdump and Wireshark read it
/// (draft-ietf-opsawg-pcap §4 file header, §5 packet record): a 24-byte file
/// header, then per frame a 16-byte record header and the captured bytes.
/// Written in the host's byte order (little-endian here); readers tell the
/// order from the magic number.
public enum PcapFormat {
    /// Microsecond timestamps (§4: 0xA1B2C3D4; 0xA1B23C4D would be nanoseconds).
    public static let magic: UInt32 = 0xA1B2_C3D4
    public static let versionMajor: UInt16 = 2
    public static let versionMinor: UInt16 = 4
    /// LINKTYPE_ETHERNET (tcpdump.org/linktypes.html): frames from the destination MAC on, no FCS.
    public static let linkTypeEthernet: UInt32 = 1
    public static let fileHeaderSize = 24
    public static let recordHeaderSize = 16

    /// The file header for frames cut to `snapLength` bytes.
    public static func fileHeader(snapLength: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(fileHeaderSize)
        append(magic, to: &bytes)
        append(versionMajor, to: &bytes)
        append(versionMinor, to: &bytes)
        append(UInt32(0), to: &bytes)  // reserved (was thiszone): 0
        append(UInt32(0), to: &bytes)  // reserved (was sigfigs): 0
        append(UInt32(snapLength), to: &bytes)
        append(linkTypeEthernet, to: &bytes)
        return bytes
    }

    /// Appends one packet record: its header and the first `snapLength` bytes of `frame`.
    public static func appendRecord(microseconds: UInt64, originalLength: Int, frame: [UInt8],
                                    snapLength: Int, to bytes: inout [UInt8]) {
        let captured = min(frame.count, snapLength, originalLength)
        append(UInt32(truncatingIfNeeded: microseconds / 1_000_000), to: &bytes)
        append(UInt32(microseconds % 1_000_000), to: &bytes)
        append(UInt32(captured), to: &bytes)
        append(UInt32(truncatingIfNeeded: originalLength), to: &bytes)
        bytes.append(contentsOf: frame[0..<captured])
    }

    static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        for shift in stride(from: 0, to: T.bitWidth, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> shift)) }
    }
}
