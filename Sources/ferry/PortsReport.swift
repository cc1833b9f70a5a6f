import Engine
import Packets

/// The ports as `show ports` reports them: what each is, its VLAN mode, its state.
enum PortsReport {
    static func json(_ sw: Switch) -> [[String: Any]] {
        sw.ports.map { p in
            ["name": p.name, "index": Int(p.index), "kind": p.port.kind, "state": p.state,
             "vlan": p.vlan.description, "mode": p.vlan.isTrunk ? "trunk" : "access",
             "vlans": p.vlan.vlans.map(Int.init), "queues": p.port.queueCount, "spec": p.spec.text]
        }
    }
}
