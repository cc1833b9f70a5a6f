import Logging
import Model
import Platform
import Ports
import Switching
import VhostUser

/// The control-loop clients that look across ports: the xdp uplinks'
/// steering maps, the guests whose departure flushes their addresses, the
/// TAPs' offloads that follow the guests. Each is built from what the ports
/// offer (`Port.steering`, `Port.guest`, `Port.offloadingTap`), so when the
/// port set changes they are built again from the new set; the old ones
/// first finish what they had seen (a guest that stopped, a database change
/// not yet steered), so nothing falls between the two. What looks after one
/// port alone comes with the port (`Port.controlClients`).
final class PortWatchers {
    private var steering: UplinkSteering?
    private var departures: GuestDepartureFlush?
    private var offloads: TapOffloadPolicy?
    private var evpn: [EvpnKernelFDB] = []

    /// Replaces the clients in `control` with ones for `ports`. Control thread only.
    func rebuild(for ports: [NamedPort], in control: ControlLoop, database: ForwardingDatabase, logger: Logger) {
        let now = MonotonicClock.now()
        departures?.service(now: now)
        steering?.service(now: now)
        for link in evpn {
            link.service(now: now)
            link.close()
            control.remove(link)
        }
        evpn = []
        // By program, not by port number: a number may now name another uplink.
        let steeredBefore = Set(steering?.uplinks.map { ObjectIdentifier($0.program) } ?? [])
        for client in [steering, departures, offloads] as [ControlLoopClient?] {
            if let client { control.remove(client) }
        }
        (steering, departures, offloads) = (nil, nil, nil)

        var uplinks: [UplinkSteering.Uplink] = []
        var taps: [(name: String, port: TapPort)] = []
        var guests: [(index: PortIndex, name: String, device: VhostDevice)] = []
        for p in ports {
            if let program = p.port.steering {
                uplinks.append(.init(index: p.index, name: p.name, vlan: p.vlan, program: program))
            }
            if let tap = p.port.offloadingTap { taps.append((p.name, tap)) }
            if let device = p.port.guest { guests.append((p.index, p.name, device)) }
        }
        if uplinks.isEmpty {
            // Nobody reads the change list any more: it would only grow.
            database.stopRecordingChanges()
        } else {
            let steering = UplinkSteering(uplinks: uplinks, database: database, logger: logger)
            for uplink in uplinks where !steeredBefore.contains(ObjectIdentifier(uplink.program)) {
                steering.steerKnownAddresses(to: uplink.index)
            }
            self.steering = steering
        }
        if !guests.isEmpty { departures = GuestDepartureFlush(guests: guests, database: database, logger: logger) }
        let tunnels = Set(ports.filter { $0.port.tunnel != nil }.map(\.index))
        for p in ports {
            guard let tunnel = p.port.tunnel, let kernel = tunnel.kernelFDB else { continue }
            // Each starts by reading the kernel's table whole: nothing is lost across a rebuild.
            let link = EvpnKernelFDB(name: p.name, index: p.index, vlan: p.vlan.untaggedVLAN ?? VLANMode.defaultVLAN, port: tunnel,
                                     kernel: kernel, database: database, logger: logger)
            link.tunnels = tunnels
            evpn.append(link)
            control.add(link)
        }
        if !taps.isEmpty { offloads = TapOffloadPolicy(taps: taps, guests: guests.map(\.device), logger: logger) }
        // After learning, which the switch added first: an address learned in a pass is steered in that pass.
        for client in [steering, departures, offloads] as [ControlLoopClient?] {
            if let client { control.add(client) }
        }
    }
}
