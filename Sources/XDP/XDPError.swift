import Glibc

/// Why the steering program could not be loaded, attached or updated.
public enum XDPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No interface of that name in this network namespace.
    case unknownInterface(String)
    /// libbpf could not open or load the embedded object (the verifier's log,
    /// if any, went to the logger).
    case loadFailed(interface: String, reason: String)
    /// Reading what is attached to the interface failed.
    case inspectionFailed(interface: String, reason: String)
    /// Another program (not `ferry_steer`) is attached: Ferry leaves it alone.
    case foreignProgram(interface: String, name: String, id: UInt32)
    /// A `ferry_steer` whose owner is alive is attached.
    case busy(interface: String, ownerPID: Int32)
    case attachFailed(interface: String, mode: XDPAttachMode, reason: String)
    case mapUpdateFailed(map: String, reason: String)

    public var description: String {
        switch self {
        case .unknownInterface(let name):
            "no network interface named \(name) in this network namespace"
        case .loadFailed(let interface, let reason):
            "cannot load the XDP steering program for \(interface): \(reason)"
                + Self.ifNotPermitted(reason, "loading it needs CAP_BPF, and CAP_NET_ADMIN for its socket map")
        case .inspectionFailed(let interface, let reason):
            "cannot tell which XDP program is attached to \(interface): \(reason)"
                + Self.ifNotPermitted(reason, "looking into a program attached before this run (BPF_PROG_GET_FD_BY_ID) "
                                      + "needs CAP_SYS_ADMIN, which Ferry's unit does not grant: detach it "
                                      + "(ip link set dev \(interface) xdp off) and start Ferry again")
        case .foreignProgram(let interface, let name, let id):
            "interface \(interface) already runs XDP program '\(name)' (id \(id)), which is not Ferry's; "
                + "Ferry never removes a program that is not its own: detach it "
                + "(ip link set dev \(interface) xdp off) or give Ferry another interface"
        case .busy(let interface, let pid):
            "interface \(interface) is already used by Ferry (pid \(pid))"
        case .attachFailed(let interface, let mode, let reason):
            "cannot attach the XDP steering program to \(interface) in \(mode) mode: \(reason)"
                + Self.ifNotPermitted(reason, "attaching needs CAP_NET_ADMIN")
        case .mapUpdateFailed(let map, let reason):
            "cannot update BPF map \(map): \(reason)"
        }
    }

    /// The capability an EPERM stands for. The reasons are libbpf's and strerror's
    /// text (the errno is gone by then), so EPERM is recognised by its text.
    private static func ifNotPermitted(_ reason: String, _ hint: String) -> String {
        reason.contains(String(cString: strerror(EPERM))) ? "; \(hint)" : ""
    }
}
