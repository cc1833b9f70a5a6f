/// What Ferry's generator writes at the start of each frame's UDP payload and its analyser
/// reads back, in network byte order:
///
///     0       2       4               8                               16
///     | magic | flow  | sequence      | send time (ns, CLOCK_MONOTONIC_RAW) |
///
/// The sequence number counts per flow and wraps at 2^32. The send time is read once per
/// burst on the raw monotonic clock (docs/LAB.md says why that clock and not the TSC).
public enum LabStamp {
    public static let magic: UInt16 = 0xF3A7
    public static let size = 16
    public static let ipv4HeaderSize = 20
    public static let udpHeaderSize = 8

    /// Where the stamp starts in a generator's frame (IPv4 without options, UDP).
    public static func offset(tagged: Bool) -> Int {
        Ethernet.headerSize + (tagged ? Ethernet.tagSize : 0) + ipv4HeaderSize + udpHeaderSize
    }

    /// The most bytes of a frame the analyser reads to find a stamp: two tags and IPv4 options.
    /// Computed and inlinable: a `static let` with an expression is a lazily initialised global,
    /// reached through a call on every frame the analyser reads.
    @inlinable public static var furthestEnd: Int { Ethernet.headerSize + 2 * Ethernet.tagSize + 60 + udpHeaderSize + size }
}
