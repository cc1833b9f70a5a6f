import Logging
import Platform
import VhostUser

extension VhostUserEndpoint: ControlLoopClient {}

// What the control thread does for ports. A port brings the clients that
// look after it alone; the clients that look across ports (Engine's
// UplinkSteering, GuestDepartureFlush, TapOffloadPolicy) are built from what
// each port offers here, not from its kind.
extension Port {
    /// The control-loop clients of this port alone, added when it opens and
    /// removed with it: a vhost port's endpoint (connections, messages,
    /// reconnects), a `PortWatch` for a port on a host interface.
    public func controlClients(name: String, logger: Logger) -> [ControlLoopClient] {
        switch self {
        case .vhost(let p): [p.endpoint]
        case .virtioUser(let p): [p]
        case .tap, .packet, .xdp: [PortWatch(name: name, port: self, logger: logger)]
        case .vxlan(let p): [PortWatch(name: name, port: self, logger: logger)] + (p.underlay.map { [$0] } ?? [])
        case .gen, .sink, .failed: []
        }
    }

    /// The errno of the port's last failure other than "not now" (0 if none):
    /// the data path only stores it; `PortWatch` logs it.
    public var lastError: Int32 {
        switch self {
        case .tap(let p): p.lastError
        case .xdp(let p): p.lastError
        case .packet(let p): p.lastError
        case .vxlan(let p): p.lastError
        case .vhost, .gen, .sink, .failed, .virtioUser: 0
        }
    }

    /// Reads the interface's MTU again, for a port whose frame limit follows it.
    func refreshMTU() {
        switch self {
        case .tap(let p): p.refreshMaxFrameLength()
        case .packet(let p): p.refreshMTU()
        case .vxlan(let p): p.refreshMTU()
        case .vhost, .xdp, .gen, .sink, .failed, .virtioUser: break
        }
    }

    /// What the port is on the host, for a log line.
    var hostDescription: String {
        switch self {
        case .tap(let p): "tap \(p.device.name)"
        case .xdp(let p): "xdp \(p.interface)"
        case .packet(let p): "packet \(p.interface)"
        case .vxlan(let p): "vxlan VNI \(p.vni) from \(p.local)"
        case .vhost, .gen, .sink, .failed, .virtioUser: kind
        }
    }

    /// What `lastError` means for the frames, for the log line that reports it.
    var errorConsequence: String {
        if case .packet = self {
            return "frames for it count as io_error while the interface is down "
                + "(one deleted and created again needs the port opened again)"
        }
        return "frames it could not take count as io_error"
    }

    /// The virtio device of a port whose far end is a guest: whether the guest
    /// runs, and which frames it accepts (its negotiated features).
    public var guest: VhostDevice? {
        if case .vhost(let p) = self { return p.device }
        return nil
    }

    /// A port whose kernel may hand it frames with the offloads every guest
    /// accepts (a TAP), for the policy that sets them.
    public var offloadingTap: TapPort? {
        if case .tap(let p) = self { return p }
        return nil
    }
}
