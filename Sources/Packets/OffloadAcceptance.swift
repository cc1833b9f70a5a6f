/// What a destination takes in a frame's virtio-net header: partial checksums
/// (NEEDS_CSUM) and which GSO super-frames. A frame asking for more is adapted
/// on its way there: its checksum finished, or it is segmented in software.
public struct OffloadAcceptance: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// NEEDS_CSUM frames (a guest with GUEST_CSUM, a TAP; a packet or xdp port
    /// finishes the checksum itself while copying into its slot).
    public static let partialChecksum = Self(rawValue: 1 << 0)
    public static let tcp4 = Self(rawValue: 1 << 1)
    public static let tcp6 = Self(rawValue: 1 << 2)
    /// TCP GSO frames with the ECN bit (CWR).
    public static let ecn = Self(rawValue: 1 << 3)
    /// UDP GSO (USO) over IPv4 and IPv6: the gso_type does not say which.
    public static let udp = Self(rawValue: 1 << 4)

    public static let everything: Self = [.partialChecksum, .tcp4, .tcp6, .ecn, .udp]

    /// Whether the frame whose virtio-net header is at `header` may go as it is.
    @inlinable
    public func accepts(header: UnsafeRawPointer) -> Bool {
        // SAFETY: `header` is a batch's header slot (PacketBatch.headerSize bytes): bytes 0 and 1 lie
        // inside it.
        let flags = header.load(as: UInt8.self)
        if flags & VirtioNetHeader.needsChecksum != 0 && !contains(.partialChecksum) { return false }
        let type = header.load(fromByteOffset: 1, as: UInt8.self)
        if type == VirtioNetHeader.gsoNone { return true }
        if type & VirtioNetHeader.gsoECN != 0 && !contains(.ecn) { return false }
        switch type & ~VirtioNetHeader.gsoECN {
        case VirtioNetHeader.gsoTCPv4: return contains(.tcp4)
        case VirtioNetHeader.gsoTCPv6: return contains(.tcp6)
        case VirtioNetHeader.gsoUDPL4: return contains(.udp)
        // Nothing takes an unknown type; segmentation refuses it and counts why.
        default: return false
        }
    }
}
