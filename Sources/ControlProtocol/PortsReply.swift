/// The reply to `show ports`: every port in switch order.
public struct PortsReply: Codable, Equatable, Sendable {
    public var ports: [PortInfo]

    public init(ports: [PortInfo]) { self.ports = ports }
}

/// One port as `show ports` lists it and `port` answers.
public struct PortInfo: Codable, Equatable, Sendable {
    public var name: String
    public var index: Int
    public var kind: String
    public var state: String
    /// The VLAN mode as people write it: `access N` or `trunk N,M`.
    public var vlan: String
    /// `access` or `trunk`: the same mode for programs, with `vlans`.
    public var mode: String
    public var vlans: [Int]
    public var queues: Int
    public var spec: String
    /// An xdp uplink's steering program; nil for every other kind.
    public var steering: SteeringInfo?

    public init(name: String, index: Int, kind: String, state: String, vlan: String, mode: String, vlans: [Int],
                queues: Int, spec: String, steering: SteeringInfo? = nil) {
        self.name = name
        self.index = index
        self.kind = kind
        self.state = state
        self.vlan = vlan
        self.mode = mode
        self.vlans = vlans
        self.queues = queues
        self.spec = spec
        self.steering = steering
    }
}

/// What an xdp uplink's steering program does: how it is attached, what it has steered
/// to Ferry and left to the kernel, how many addresses it steers.
public struct SteeringInfo: Codable, Equatable, Sendable {
    public var programID: UInt32
    public var attach: String
    public var sockets: String
    public var steered: UInt64
    public var passed: UInt64
    public var malformed: UInt64
    public var addresses: Int
    /// Why zero-copy was not used when `auto` asked for it; nil when it was, or was not asked for.
    public var zeroCopyFallback: String?

    public init(programID: UInt32, attach: String, sockets: String, steered: UInt64, passed: UInt64,
                malformed: UInt64, addresses: Int, zeroCopyFallback: String? = nil) {
        self.programID = programID
        self.attach = attach
        self.sockets = sockets
        self.steered = steered
        self.passed = passed
        self.malformed = malformed
        self.addresses = addresses
        self.zeroCopyFallback = zeroCopyFallback
    }

    enum CodingKeys: String, CodingKey {
        case programID = "program_id", attach, sockets, steered, passed, malformed, addresses
        case zeroCopyFallback = "zero_copy_fallback"
    }
}
