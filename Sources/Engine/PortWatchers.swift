import Logging
import Platform
import Ports
import Switching
import VhostUser

/// The control-loop clients that look after ports of one kind: the xdp
/// uplinks' steering maps, the guests whose departure flushes their
/// addresses, the TAPs' offloads and MTUs, the packet ports' MTUs and errors.
/// Each is built from a list of ports, so when the port set changes they are
/// built again from the new set; the old ones first finish what they had
/// seen (a guest that stopped, a database change not yet steered), so nothing
/// falls between the two.
final class PortWatchers {
    private var steering: UplinkSteering?
    private var departures: GuestDepartureFlush?
    private var offloads: TapOffloadPolicy?
    private var mtus: TapMTUWatch?
    private var packets: PacketPortWatch?
    private var errors: PortErrorLog?

    /// Replaces the clients in `control` with ones for `ports`. Control thread only.
    func rebuild(for ports: [NamedPort], in control: ControlLoop, database: ForwardingDatabase, logger: Logger) {
        let now = MonotonicClock.now()
        departures?.service(now: now)
        steering?.service(now: now)
        // By program, not by port number: a number may now name another uplink.
        let steeredBefore = Set(steering?.uplinks.map { ObjectIdentifier($0.program) } ?? [])
        for client in [steering, departures, offloads, mtus, packets, errors] as [ControlLoopClient?] {
            if let client { control.remove(client) }
        }
        (steering, departures, offloads, mtus, packets, errors) = (nil, nil, nil, nil, nil, nil)

        var uplinks: [UplinkSteering.Uplink] = []
        var taps: [(name: String, port: TapPort)] = []
        var guests: [(index: UInt16, name: String, device: VhostDevice)] = []
        var packetPorts: [(name: String, port: PacketPort)] = []
        var erring: [PortErrorLog.Watched] = []
        for p in ports {
            switch p.port {
            case .xdp(let x):
                uplinks.append(.init(index: p.index, name: p.name, vlan: p.vlan, program: x.steering))
                erring.append(PortErrorLog.Watched(name: p.name, what: "xdp \(x.interface)", lastError: { x.lastError }))
            case .tap(let t):
                taps.append((p.name, t))
                erring.append(PortErrorLog.Watched(name: p.name, what: "tap \(t.device.name)", lastError: { t.lastError }))
            case .vhost(let v): guests.append((p.index, p.name, v.device))
            case .packet(let u): packetPorts.append((p.name, u))
            case .gen, .sink, .failed: break
            }
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
        if !taps.isEmpty {
            offloads = TapOffloadPolicy(taps: taps, guests: guests.map(\.device), logger: logger)
            mtus = TapMTUWatch(taps: taps.map(\.port))
        }
        if !packetPorts.isEmpty { packets = PacketPortWatch(ports: packetPorts, logger: logger) }
        if !erring.isEmpty { errors = PortErrorLog(ports: erring, logger: logger) }
        // After learning, which the switch added first: an address learned in a pass is steered in that pass.
        for client in [steering, departures, offloads, mtus, packets, errors] as [ControlLoopClient?] {
            if let client { control.add(client) }
        }
    }
}
