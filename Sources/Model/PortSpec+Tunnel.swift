extension PortSpec {
    /// The options of `vxlan:VNI,local=IP[,remote=IP[+IP...]][,port=4789]` (EVPN's below):
    /// one port per VNI; `remote` is the flood list (IPv4 or IPv6, the local
    /// address's family), without it every sender is taken as a VTEP.
    static func vxlanKind(vni vniText: String?, local localText: String?, remote: String?, port: String?,
                          _ text: String) throws(ParseError) -> Kind {
        guard let vniText, !vniText.isEmpty else {
            throw ParseError(text, "vxlan needs a VNI (vxlan:VNI,local=IP)", key: "vni")
        }
        guard let vni = UInt32(vniText), PortLimits.vxlanVNIs.contains(vni) else {
            throw ParseError(text, "VNI '\(vniText)' must be \(PortLimits.vxlanVNIs.lowerBound)...\(PortLimits.vxlanVNIs.upperBound)",
                             key: "vni")
        }
        guard let localText else {
            throw ParseError(text, "vxlan needs local=IP, the address its datagrams come from", key: "local")
        }
        guard let local = InternetAddress(localText) else {
            throw ParseError(text, "local '\(localText)' is not an IPv4 or IPv6 address", key: "local")
        }
        var remotes: [InternetAddress] = []
        if let remote {
            for item in remote.split(separator: "+", omittingEmptySubsequences: false) {
                guard let address = InternetAddress(String(item)) else {
                    throw ParseError(text, "remote '\(item)' is not an IPv4 or IPv6 address", key: "remote")
                }
                guard address.isIPv6 == local.isIPv6 else {
                    throw ParseError(text, "remote \(address) and local \(local) must both be IPv4 or both IPv6",
                                     key: "remote")
                }
                guard address != local, !remotes.contains(address) else {
                    throw ParseError(text, "remote \(address) is given twice or is the local address", key: "remote")
                }
                remotes.append(address)
            }
            guard remotes.count <= PortLimits.vxlanRemotes else {
                throw ParseError(text, "at most \(PortLimits.vxlanRemotes) remote VTEPs", key: "remote")
            }
        }
        var udpPort = PortLimits.vxlanDefaultUDPPort
        if let port {
            guard let v = UInt16(port), v > 0 else { throw ParseError(text, "port must be 1...65535", key: "port") }
            udpPort = v
        }
        return .vxlan(vni: vni, local: local, remotes: remotes, udpPort: udpPort)
    }
}

extension PortSpec {
    /// `evpn=VXLANDEV,evpn_port=BRIDGEPORT`: both or neither. The flood list comes from
    /// EVPN, so not from `remote=`; and the kernel bridge meeting zebra carries one VLAN.
    static func evpnDevices(vxlanDevice: String?, bridgePort: String?, remote: String?, vlan: VLANMode,
                            _ text: String) throws(ParseError) -> EvpnDevices? {
        guard vxlanDevice != nil || bridgePort != nil else { return nil }
        guard let vxlanDevice, EvpnDevices.isInterfaceName(vxlanDevice) else {
            throw ParseError(text, "evpn= names the kernel vxlan device zebra installs EVPN routes on "
                             + "(an interface name, 1-15 characters)", key: "evpn")
        }
        guard let bridgePort, EvpnDevices.isInterfaceName(bridgePort), bridgePort != vxlanDevice else {
            throw ParseError(text, "evpn_port= names the bridge port Ferry writes its local MACs to "
                             + "(an interface name other than evpn='s)", key: "evpn_port")
        }
        if remote != nil {
            throw ParseError(text, "with evpn= the flood list comes from EVPN (type-3 routes): drop remote=",
                             key: "remote")
        }
        if vlan.isTrunk {
            throw ParseError(text, "an EVPN vxlan port carries one VLAN (vlan=N), not a trunk", key: "trunk")
        }
        return EvpnDevices(vxlanDevice: vxlanDevice, bridgePort: bridgePort)
    }
}

extension PortSpec {
    /// `via=PORTNAME`: the `xdp:` port the datagrams leave through (the switch
    /// checks the kind when it wires the ports; here only that it can be a name).
    static func underlayPort(_ name: String?, _ text: String) throws(ParseError) -> String? {
        guard let name else { return nil }
        guard !name.isEmpty, !name.contains(where: { $0 == "," || $0 == "=" || $0.isWhitespace }) else {
            throw ParseError(text, "via= names the xdp: port (its name=) the tunnel's datagrams leave through",
                             key: "via")
        }
        return name
    }
}
