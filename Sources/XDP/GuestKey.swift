import Model
import Packets

/// The key of `ferry_guests` (struct ferry_guest_key in bpf/ferry_steer.bpf.c):
/// the destination MAC, then the 802.1Q VID in host byte order, 8 bytes with
/// no padding. Built byte by byte so Swift's struct layout never matters.
struct GuestKey {
    var bytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

    /// The largest 12-bit VID; 0 stands for untagged.
    static let maxVLAN: UInt16 = Ethernet.vlanIDMask

    init(mac: MACAddress, vlan: UInt16) {
        // Host byte order: the first byte in memory is the low one on a little-endian host.
        let memoryOrder = UInt16(littleEndian: vlan)
        bytes = (mac.bytes.0, mac.bytes.1, mac.bytes.2, mac.bytes.3, mac.bytes.4, mac.bytes.5,
                 UInt8(truncatingIfNeeded: memoryOrder), UInt8(truncatingIfNeeded: memoryOrder >> 8))
    }

    init() { bytes = (0, 0, 0, 0, 0, 0, 0, 0) }

    var mac: MACAddress { MACAddress(bytes.0, bytes.1, bytes.2, bytes.3, bytes.4, bytes.5) }

    var vlan: UInt16 {
        UInt16(littleEndian: UInt16(bytes.6) | UInt16(bytes.7) << 8)
    }
}
