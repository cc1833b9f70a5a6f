import Engine
import Packets
import Ports

/// The ports as `show ports` reports them: what each is, its VLAN mode, its state.
enum PortsReport {
    static func json(_ sw: Switch) -> [[String: Any]] { sw.ports.map(json) }

    /// One port, as `show ports` lists it and `port add`/`port del` answer.
    static func json(_ p: NamedPort) -> [String: Any] {
        var entry: [String: Any] = [
            "name": p.name, "index": Int(p.index), "kind": p.port.kind, "state": p.state,
            "vlan": p.vlan.description, "mode": p.vlan.isTrunk ? "trunk" : "access",
            "vlans": p.vlan.vlans.map(Int.init), "queues": p.port.queueCount, "spec": p.spec.text,
        ]
        if case .xdp(let x) = p.port { entry["steering"] = steering(x) }
        return entry
    }

    /// What the uplink's XDP program does: how it was attached, what it has
    /// steered to Ferry and passed to the kernel, how many addresses it steers.
    static func steering(_ port: XdpPort) -> [String: Any] {
        let stats = port.steering.statistics()
        var entry: [String: Any] = [
            "program_id": Int(port.steering.programID), "attach": "\(port.steering.attachedMode)",
            "sockets": port.copyMode.rawValue, "steered": stats.steered, "passed": stats.passed,
            "malformed": stats.malformed, "addresses": port.steering.guests().count,
        ]
        if let why = port.zeroCopyFallback { entry["zero_copy_fallback"] = why }
        return entry
    }
}
