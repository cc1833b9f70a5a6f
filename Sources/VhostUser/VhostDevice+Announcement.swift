import Logging
import Model
import Synchronization

// SEND_RARP (protocol feature RARP): the destination's front-end asks, once the
// guest runs here, for a RARP broadcast from the guest's MAC, for guests that
// cannot announce themselves (no VIRTIO_NET_F_GUEST_ANNOUNCE, which Ferry does
// not offer: QEMU then always asks). The frame enters the switch as if the guest
// had sent it on this port (VhostPort takes it with the next pull of pair 0),
// so the port learns the address and the broadcast floods its VLAN, uplinks
// included.
extension VhostDevice {
    /// Bit 48 marks a pending announcement, so that 00:00:00:00:00:00 is not "none".
    static let announcementPending: UInt64 = 1 << 48

    /// Queues the announcement SEND_RARP asks for and wakes the workers to send it.
    func announce(_ payload: UInt64) throws(Refusal) {
        // The first 6 bytes of the u64 payload, in wire order (vhost-user.rst, SEND_RARP).
        let mac = Self.address(of: payload)
        guard !mac.isMulticast, mac != MACAddress(0, 0, 0, 0, 0, 0) else {
            throw Refusal("SEND_RARP for \(mac), which is not a station's address")
        }
        pendingAnnouncement.store(payload & 0xFFFF_FFFF_FFFF | Self.announcementPending, ordering: .releasing)
        // A sleeping worker wakes for a pause; the one that polls pair 0 sends it on its next pass.
        gate.whilePaused {}
        logger.info("vhost-user \(name): announcing \(mac) on this port (SEND_RARP)")
    }

    /// True when a SEND_RARP waits to be sent: one relaxed load per pull of pair 0.
    @inlinable
    public var hasPendingAnnouncement: Bool { pendingAnnouncement.load(ordering: .relaxed) != 0 }

    /// The address to announce, taken once (nil when none waits).
    public func takeAnnouncement() -> MACAddress? {
        let v = pendingAnnouncement.exchange(0, ordering: .acquiring)
        guard v != 0 else { return nil }
        return Self.address(of: v)
    }

    /// The MAC in the first 6 bytes of a little-endian u64, without allocating (the worker calls this).
    static func address(of value: UInt64) -> MACAddress {
        func byte(_ i: UInt64) -> UInt8 { UInt8(truncatingIfNeeded: value >> (8 * i)) }
        return MACAddress(byte(0), byte(1), byte(2), byte(3), byte(4), byte(5))
    }
}
