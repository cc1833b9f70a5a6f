/// Every possible 802.1Q tag, prebuilt: the C-TAG TPID (`Ethernet.tpidCustomerVLAN`) then the TCI (priority 0,
/// the VLAN id), network byte order. Pushing a tag onto a frame is one more
/// segment pointing here, so tagging copies nothing. Written once, read by
/// every worker.
public final class VLANTagTable: @unchecked Sendable {
    @usableFromInline let bytes: UnsafeMutableRawPointer

    public init() {
        bytes = .allocate(byteCount: 4096 * Ethernet.tagSize, alignment: 64)
        for vlan in 0..<4096 {
            // SAFETY: vlan < 4096: each 4-byte tag lies in the 4096 * tagSize bytes just allocated.
            let p = bytes + vlan * Ethernet.tagSize
            p.storeBytes(of: Ethernet.tpidCustomerVLAN.bigEndian, as: UInt16.self)
            p.storeBytes(of: UInt8(vlan >> 8), toByteOffset: 2, as: UInt8.self)
            p.storeBytes(of: UInt8(vlan & 0xFF), toByteOffset: 3, as: UInt8.self)
        }
    }

    deinit { bytes.deallocate() }

    @inlinable
    public func tag(_ vlan: UInt16) -> UnsafeRawPointer {
        // SAFETY: the VLAN id is masked to 12 bits: the tag lies in the 4096 * tagSize bytes init
        // wrote.
        UnsafeRawPointer(bytes + Int(vlan & Ethernet.vlanIDMask) &* Ethernet.tagSize)
    }
}
