// A vxlan port with `via=` and the xdp uplink it sends through: the one place
// that knows which kinds meet there, so the switch wires them by name only.
extension Port {
    /// Connects a vxlan port with `via=` to `uplink`: it sends through the
    /// uplink's interface, and the uplink's steering program redirects the
    /// port's datagrams to Ferry (not for a port that numbers any sender: only
    /// the socket path may add to its VTEP table). False, and the port sends
    /// through the kernel, when this is no such port or `uplink` is no xdp port.
    /// Control thread, while no worker sends to either.
    public func connectUnderlay(to uplink: Port) throws -> Bool {
        guard case .vxlan(let vxlan) = self, vxlan.underlay != nil else { return false }
        guard case .xdp(let xdp) = uplink else {
            vxlan.underlay?.disconnect()
            return false
        }
        try vxlan.connectUnderlay(interface: xdp.interface, queues: xdp.queueCount)
        if !vxlan.acceptsAnySender { try xdp.steerTunnel(local: vxlan.local, udpPort: vxlan.udpPort) }
        return true
    }

    /// The vxlan port sends through the kernel again (its uplink is gone or failed).
    public func disconnectUnderlay() {
        tunnel?.underlay?.disconnect()
    }
}
