/// The commands a request's `"cmd"` names, in the order error messages list them.
public enum ControlCommand: String, CaseIterable, Sendable {
    case hello
    case stats
    case statsClear = "stats-clear"
    case show
    case fdbAdd = "fdb-add"
    case fdbDel = "fdb-del"
    case fdbFlush = "fdb-flush"
    case port
    case capture
}

/// What `show` shows (`"what"`).
public enum ShowTarget: String, CaseIterable, Sendable {
    case ports
    case fdb
    case stats
    case vteps
}

/// What `port` does (`"op"`).
public enum PortOperation: String, CaseIterable, Sendable {
    case add
    case del
}

/// Which of a port's frames a capture takes (`"direction"`).
public enum CaptureDirection: String, CaseIterable, Sendable {
    case rx
    case tx
    case both
}

/// A capture's parameters with their defaults filled in.
public struct CaptureParameters: Equatable, Sendable {
    public var port: String
    public var direction: CaptureDirection
    /// Frames to write before the stream ends; nil: until the client or the port goes.
    public var count: Int?
    public var snapLength: Int

    public init(port: String, direction: CaptureDirection = .both, count: Int? = nil,
                snapLength: Int = ControlProtocol.snapLengths.upperBound) {
        self.port = port
        self.direction = direction
        self.count = count
        self.snapLength = snapLength
    }
}

/// Which forwarding entries `fdb-flush` removes: every learned one, or those on one port
/// and/or in one VLAN; static ones too only when asked.
public struct FDBFlushFilter: Equatable, Sendable {
    /// A port's name; nil: every port.
    public var port: String?
    /// nil: every VLAN.
    public var vlan: Int?
    /// Static entries go too (learned ones always do).
    public var includingStatic: Bool

    public init(port: String? = nil, vlan: Int? = nil, includingStatic: Bool = false) {
        self.port = port
        self.vlan = vlan
        self.includingStatic = includingStatic
    }
}

/// One request, its fields checked for presence and JSON type (what they mean — is there
/// such a port, is the MAC unicast — is the server's to check).
public enum ControlRequest: Equatable, Sendable {
    /// Names the protocol version the client speaks; the reply names the one both will use.
    case hello(version: Int)
    case stats
    /// Marks the counters: `stats` reports what was counted since (the absolute counters,
    /// and /metrics, go on unchanged).
    case statsClear
    case show(ShowTarget)
    /// `vlan` nil: the port's access VLAN.
    case fdbAdd(mac: String, port: String, vlan: Int?)
    /// `vlan` nil: VLAN 1.
    case fdbDel(mac: String, vlan: Int?)
    case fdbFlush(FDBFlushFilter)
    case portAdd(spec: String)
    case portDel(name: String)
    case capture(CaptureParameters)

    public var command: ControlCommand {
        switch self {
        case .hello: .hello
        case .stats: .stats
        case .statsClear: .statsClear
        case .show: .show
        case .fdbAdd: .fdbAdd
        case .fdbDel: .fdbDel
        case .fdbFlush: .fdbFlush
        case .portAdd, .portDel: .port
        case .capture: .capture
        }
    }
}
