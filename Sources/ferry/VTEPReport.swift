import ControlProtocol
import Engine
import Model
import Ports
import Switching

/// The remote VTEPs of every vxlan port as `show vteps` reports them.
enum VTEPReport {
    static func vteps(_ sw: Switch) -> [VTEPInfo] {
        var list: [VTEPInfo] = []
        for p in sw.ports {
            guard let tunnel = p.port.tunnel else { continue }
            let endpoints = tunnel.endpoints
            let count = endpoints.count
            guard count > 0 else { continue }
            for number in 1...count {
                let c = endpoints.counters(number)
                list.append(VTEPInfo(port: p.name, vni: Int(tunnel.vni), address: "\(endpoints.address(number))",
                                     flood: endpoints.floods(number), rxPackets: c.rxPackets,
                                     rxBytes: c.rxBytes, txPackets: c.txPackets, txBytes: c.txBytes))
            }
        }
        return list
    }

    /// Whether an entry is a remote MAC BGP EVPN placed (an EVPN vxlan port's pinned entry).
    static func isEVPN(_ sw: Switch, entry: FDBEntry) -> Bool {
        entry.isPinnedRemote && sw.port(index: entry.port)?.port.tunnel?.evpn != nil
    }

    /// The address of VTEP `number` behind port `index`, for a forwarding entry; nil for none.
    static func address(_ sw: Switch, port index: PortIndex, number: UInt16) -> String? {
        guard number != 0, let tunnel = sw.port(index: index)?.port.tunnel,
              Int(number) <= tunnel.endpoints.count else { return nil }
        return "\(tunnel.endpoints.address(Int(number)))"
    }
}
