import Logging
import Model
import Packets
import Platform
import Switching
import XDP

/// Keeps each AF_XDP uplink's steering map equal to the addresses the
/// forwarding database places behind other ports, so that the NIC's frames for
/// guests (and for anything else Ferry switches) come to Ferry and the rest
/// stays with the host's kernel.
///
/// It follows the database's change list on the control thread, the
/// database's one writer, right after learning in the same pass: an address
/// learned from a guest's first frame is in the map before the answer to that
/// frame can come back from the wire, in the common case. When it is not
/// (the answer raced the control thread), the frame reaches the kernel and
/// the uplink's copy socket (`packet` filter for other hosts' frames) still
/// hands it to Ferry.
///
/// The map is keyed by the VLAN as the wire carries it: 0 for the VLAN of an
/// access uplink (untagged on the wire), the VLAN id itself on a trunk.
final class UplinkSteering: ControlLoopClient {
    struct Uplink {
        let index: PortIndex
        let name: String
        let vlan: VLANMode
        let program: SteeringProgram
    }

    let uplinks: [Uplink]
    let database: ForwardingDatabase
    let logger: Logger
    /// Map updates the kernel refused (the map is full, or the program went away).
    private(set) var failures: UInt64 = 0
    private var failureLogged = false

    init(uplinks: [Uplink], database: ForwardingDatabase, logger: Logger) {
        self.uplinks = uplinks
        self.database = database
        self.logger = logger
        database.recordChanges()
    }

    var pollDescriptors: [Int32] { [] }

    /// Changes made by another client of this pass (a static entry from the
    /// control socket) are applied at once on the next.
    func timeout(now: Double) -> Double? { database.hasChanges ? 0 : nil }

    func service(now: Double) {
        for change in database.takeChanges() { apply(change) }
    }

    func apply(_ change: FDBChange) {
        for uplink in uplinks { apply(change, to: uplink) }
    }

    /// Steers to Ferry every address the database already places behind
    /// another port: an uplink added while Ferry runs starts with an empty map.
    func steerKnownAddresses(to index: PortIndex) {
        guard let uplink = uplinks.first(where: { $0.index == index }) else { return }
        for entry in database.entries(now: 0) where entry.port != index {
            apply(FDBChange(key: entry.key, port: entry.port), to: uplink)
        }
    }

    private func apply(_ change: FDBChange, to uplink: Uplink) {
        let mac = change.key.macAddress
        guard let wire = Self.wireVLAN(change.key.vlan, on: uplink.vlan) else { return }
        do throws(XDPError) {
            if let port = change.port, port != uplink.index {
                try uplink.program.addGuest(mac, vlan: wire)
            } else {
                try uplink.program.removeGuest(mac, vlan: wire)
            }
        } catch {
            failures &+= 1
            // Once: a full map fails for every new address until entries age out.
            if !failureLogged {
                failureLogged = true
                logger.warning("""
                    uplink \(uplink.name): steering map not updated for \(mac) (\(error)); \
                    its frames reach Ferry through the kernel until it is
                    """)
            }
        }
    }

    /// The VLAN id an uplink's wire carries for switch VLAN `vlan`: 0 (untagged)
    /// for an access uplink's own VLAN and a trunk's native one, the id itself on
    /// a trunk that carries it; nil when the uplink does not carry the VLAN at all.
    /// (A trunk also accepts its native VLAN tagged; such frames are not steered
    /// and reach Ferry through the kernel's copy path, as any unsteered frame.)
    static func wireVLAN(_ vlan: UInt16, on mode: VLANMode) -> UInt16? {
        switch mode {
        case .access(let v): v == vlan ? 0 : nil
        case .trunk(let list, let native): native == vlan ? 0 : (list.contains(vlan) ? vlan : nil)
        }
    }
}
