extension PortSpec.Kind {
    /// What a port of this kind holds that no other port may share: a vhost
    /// socket path or a network interface.
    public var claim: String? {
        switch self {
        case .vhost(let path, _, _, _): "socket \(path)"
        case .tap(let name, _, _): "interface \(name)"
        case .xdp(let interface, _, _, _), .packet(let interface, _): "interface \(interface)"
        case .gen, .sink: nil
        // A client's socket is the back-end's.
        case .virtioUser(let path, let server, _): server ? "socket \(path)" : nil
        case .vxlan(_, let local, _, let port): "UDP port \(port) on \(local)"
        }
    }
}
