/// The kernel devices an EVPN vxlan port meets FRR's zebra at (`evpn=`,
/// `evpn_port=`): a Linux `vxlan` device for the port's VNI, in a bridge,
/// where zebra installs what BGP EVPN learned (remote MACs, the flood list),
/// and another port of that bridge on which Ferry writes the MACs it learned
/// locally, for zebra to advertise. Neither carries Ferry's traffic
/// (docs/MULTIHOST.md, "EVPN through FRR").
public struct EvpnDevices: Equatable, Sendable {
    public var vxlanDevice: String
    public var bridgePort: String

    public init(vxlanDevice: String, bridgePort: String) {
        self.vxlanDevice = vxlanDevice
        self.bridgePort = bridgePort
    }

    /// An interface name as the kernel takes it: 1-15 bytes, no '/', ':' or white space.
    static func isInterfaceName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 15 && name != "." && name != ".."
            && !name.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace })
    }
}
