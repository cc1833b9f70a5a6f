import Model
import Packets
import Platform
import Ports
import Switching

/// What all workers share: the forwarding decision (the database and each
/// VLAN's member ports), the prebuilt 802.1Q tags, and the doorbell that wakes
/// the database's writer. Workers only read it; the control thread writes it.
public final class Bridge: @unchecked Sendable {
    public let forwarder: Forwarder
    public let tags = VLANTagTable()
    public let doorbell: LearningDoorbell
    /// The ports and directions being captured (`ferry ctl capture`).
    public let capture = CaptureSelection()

    public var database: ForwardingDatabase { forwarder.database }

    public init(database: ForwardingDatabase) {
        forwarder = Forwarder(database: database)
        doorbell = LearningDoorbell()
    }

    /// Sets every VLAN's member ports from the ports' modes; `modes[i]` is port i's.
    public func setMembership(_ modes: [VLANMode]) {
        apply(VLANMembership(modes.enumerated().map { (PortIndex(truncating: $0.offset), $0.element) }))
    }

    /// Stores every VLAN's member set. Workers read the sets without a lock, so
    /// a change that also changes their port tables is applied while they are paused.
    public func apply(_ membership: VLANMembership) {
        for vlan in 0..<UInt16(Forwarder.vlanCount) { forwarder.setMembers(membership.members(vlan: vlan), vlan: vlan) }
    }
}

/// Every VLAN's member ports, built on the control thread before it is applied,
/// so the pause that applies it only stores.
public struct VLANMembership {
    private var sets: [PortSet]

    /// `ports`: each port's number in the switch and its VLAN mode.
    public init(_ ports: [(index: PortIndex, vlan: VLANMode)]) {
        sets = Array(repeating: .empty, count: Forwarder.vlanCount)
        for port in ports {
            for vlan in port.vlan.vlans { sets[Int(vlan)].insert(port.index) }
        }
    }

    public func members(vlan: UInt16) -> PortSet { sets[Int(vlan & Ethernet.vlanIDMask)] }
}

/// A switch port as one worker sees it: where the worker transmits to it, and
/// how it tags. `transmitLock` is set only when several workers share the
/// port's transmit queue (fewer queues than workers), as in OVS-DPDK.
public struct WorkerPort {
    public let port: Port
    /// How the port admits frames: its VLAN mode, the link-local addresses it forwards.
    public let ingress: PortIngress
    /// A trunk's native VLAN, whose frames leave it untagged; 0 for none (and for
    /// an access port, whose frames all leave untagged).
    public let nativeVLAN: UInt16
    public let transmitQueue: Int
    /// The counters of `transmitQueue`, looked up once here rather than per adapted burst.
    public let counters: QueueCounters
    /// A vhost port's pair `transmitQueue`, which the worker pushes through
    /// without reference counting per burst (`VhostQueuePair`); nil for other kinds.
    public let vhost: VhostQueuePair?
    public let transmitLock: TransmitLock?
    /// A tunnel port (vxlan): its frames' sources are learned behind the VTEP they came from.
    public let isTunnel: Bool
    /// Whether frames' source addresses are learned here (not on an EVPN vxlan port, whose
    /// remote addresses come from the control plane).
    public let learnsSources: Bool
    /// A vxlan port sending through an `xdp:` uplink (`via=`): the uplink's port
    /// number, to which the worker hands what the port encapsulates; -1 for none.
    public let underlay: Int
    /// An xdp uplink's vxlan ports that send through it (`via=`): the numbers of
    /// the ports the datagrams its pulls set apart go to (Worker+Tunnels.swift).
    public let tunnelPorts: [Int]

    public init(port: Port, vlan: VLANMode, transmitQueue: Int, transmitLock: TransmitLock? = nil,
                groupForwardMask: GroupForwardMask = .none, underlay: Int = -1, tunnelPorts: [Int] = []) {
        self.port = port
        ingress = PortIngress(vlan: vlan, groupForwardMask: groupForwardMask)
        nativeVLAN = vlan.isTrunk ? ingress.untaggedVLAN : 0
        self.transmitQueue = transmitQueue
        counters = port.counters(queue: transmitQueue)
        vhost = port.vhostQueuePair(transmitQueue)
        self.transmitLock = transmitLock
        isTunnel = port.tunnel != nil
        learnsSources = port.tunnel?.learnsSources ?? true
        self.underlay = underlay
        self.tunnelPorts = tunnelPorts
    }

    @inlinable public var isTrunk: Bool { ingress.isTrunk }
    /// The VLAN of an untagged frame from this port: an access port's, a trunk's
    /// native one; 0 for a trunk without one (untagged frames are refused).
    @inlinable public var accessVLAN: UInt16 { ingress.untaggedVLAN }

    /// A number no port holds (one removed, or never used): in no VLAN, so never
    /// a destination, and no worker polls it; it only keeps the table indexed by port number.
    static func vacant() -> WorkerPort {
        WorkerPort(port: .failed(FailedPort(reason: "no port")), vlan: .access(VLANMode.defaultVLAN), transmitQueue: 0)
    }
}

/// A receive queue a worker polls: port `index` (its number in the switch), queue `queue`.
public struct WorkerSource {
    public let index: PortIndex
    public let port: Port
    public let queue: Int
    /// A generator's port: the worker asks it how many frames its destinations' room allows.
    public let generator: GenPort?
    /// The queue's counters, looked up once here rather than once per burst.
    public let counters: QueueCounters
    /// A vhost port's pair `queue`, which the worker pulls through without
    /// reference counting per burst (`VhostQueuePair`); nil for other kinds.
    public let vhost: VhostQueuePair?
    /// Looking costs a syscall (`Port.pullCostsASyscall`): after empty looks
    /// the worker skips this queue for a growing number of loops (see `Worker.forwardOnce`).
    public let costsASyscall: Bool
    /// A guest's ring: frames from it make an `adaptive` worker spin before
    /// it sleeps, so the guest need not kick for its next burst (`IdlePolicy`).
    public let isGuestRing: Bool
    /// Set by `Worker.configure` when every frame of this TAP queue can only go
    /// to this one (vhost) port: the worker then reads frames straight into
    /// that guest's receive buffers (Worker+Direct.swift).
    public internal(set) var directPeer: Int? = nil

    public init(index: PortIndex, port: Port, queue: Int) {
        self.index = index
        self.port = port
        self.queue = queue
        generator = port.generator
        counters = port.counters(queue: queue)
        vhost = port.vhostQueuePair(queue)
        costsASyscall = port.pullCostsASyscall
        isGuestRing = port.receivesFromGuestRing
    }
}

/// One remembered forwarding decision: the frame's addresses and VLAN, and
/// where it went. Valid only within one burst from one receive queue, so the
/// database and the VLANs cannot have changed under it in any way that
/// matters (the worker reads a live table; a burst is microseconds).
public struct RecentDecision {
    @usableFromInline var destination: UInt64 = 0
    @usableFromInline var source: UInt64 = 0
    @usableFromInline var vlan: UInt16 = 0
    @usableFromInline var goesTo = FrameDestination.nowhere
    @usableFromInline var unicast = false
    /// The tunnel endpoint of a unicast destination (0: none).
    @usableFromInline var endpoint: UInt16 = 0
    @usableFromInline var valid = false

    @inlinable public init() {}

    @inlinable
    init(destination: UInt64, source: UInt64, vlan: UInt16, goesTo: FrameDestination, unicast: Bool,
         endpoint: UInt16) {
        self.destination = destination
        self.source = source
        self.vlan = vlan
        self.goesTo = goesTo
        self.unicast = unicast
        self.endpoint = endpoint
        valid = true
    }
}
