import CBPF
import Glibc

/// The descriptors of the steering program's maps (owned by its BPFObject),
/// so each control-plane update is one bpf() syscall. Names and layouts are
/// those of bpf/ferry_steer.bpf.c.
struct SteeringMaps {
    static let guestsName = "ferry_guests"
    static let tunnelsName = "ferry_tunnels"
    static let socketsName = "ferry_xsks"
    static let statisticsName = "ferry_stats"
    static let ownerName = "ferry_owner"

    /// enum ferry_stat in the program.
    enum Counter: UInt32, CaseIterable {
        case steered = 0
        case passed = 1
        case malformed = 2
        case tunnel = 3
    }

    /// HASH: GuestKey → u32 (flags, unused).
    let guests: Int32
    /// HASH: TunnelKey → u32 (flags, unused).
    let tunnels: Int32
    /// XSKMAP: receive queue → AF_XDP socket.
    let sockets: Int32
    /// PERCPU_ARRAY of u64, indexed by `Counter`.
    let statistics: Int32
    /// ARRAY of one u32: the pid of the Ferry that attached the program.
    let owner: Int32

    init(_ object: BPFObject) throws(XDPObjectError) {
        guests = try object.mapDescriptor(Self.guestsName)
        tunnels = try object.mapDescriptor(Self.tunnelsName)
        sockets = try object.mapDescriptor(Self.socketsName)
        statistics = try object.mapDescriptor(Self.statisticsName)
        owner = try object.mapDescriptor(Self.ownerName)
    }

    /// The CPUs a per-CPU map holds a value for (possible, not online, CPUs).
    static let possibleCPUs: Int = {
        let count = libbpf_num_possible_cpus()
        precondition(count > 0, "libbpf_num_possible_cpus: \(libbpfErrorText(count))")
        return Int(count)
    }()
}
