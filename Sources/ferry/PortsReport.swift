import ControlProtocol
import Engine
import Packets
import Ports

/// The ports as `show ports` reports them: what each is, its VLAN mode, its state.
enum PortsReport {
    static func ports(_ sw: Switch) -> [PortInfo] { sw.ports.map(port) }

    /// One port, as `show ports` lists it and `port add`/`port del` answer.
    static func port(_ p: NamedPort) -> PortInfo {
        var steering: SteeringInfo?
        if case .xdp(let x) = p.port { steering = Self.steering(x) }
        return PortInfo(name: p.name, index: Int(p.index), kind: p.port.kind, state: p.state,
                        vlan: p.vlan.description, mode: p.vlan.isTrunk ? "trunk" : "access",
                        vlans: p.vlan.vlans.map(Int.init), queues: p.port.queueCount, spec: p.spec.text,
                        steering: steering)
    }

    /// What the uplink's XDP program does: how it was attached, what it has
    /// steered to Ferry and passed to the kernel, how many addresses it steers.
    static func steering(_ port: XdpPort) -> SteeringInfo {
        let stats = port.steering.statistics()
        return SteeringInfo(programID: port.steering.programID, attach: "\(port.steering.attachedMode)",
                            sockets: port.copyMode.rawValue, steered: stats.steered, passed: stats.passed,
                            malformed: stats.malformed, addresses: port.steering.guests().count,
                            zeroCopyFallback: port.zeroCopyFallback)
    }
}
