/// The commands a request's `"cmd"` names, in the order error messages list them.
public enum ControlCommand: String, CaseIterable, Sendable {
    case hello
    case stats
    case show
    case fdbAdd = "fdb-add"
    case fdbDel = "fdb-del"
    case port
    case capture
}

/// What `show` shows (`"what"`).
public enum ShowTarget: String, CaseIterable, Sendable {
    case ports
    case fdb
    case stats
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

/// One request, its fields checked for presence and JSON type (what they mean — is there
/// such a port, is the MAC unicast — is the server's to check).
public enum ControlRequest: Equatable, Sendable {
    /// Names the protocol version the client speaks; the reply names the one both will use.
    case hello(version: Int)
    case stats
    case show(ShowTarget)
    /// `vlan` nil: the port's access VLAN.
    case fdbAdd(mac: String, port: String, vlan: Int?)
    /// `vlan` nil: VLAN 1.
    case fdbDel(mac: String, vlan: Int?)
    case portAdd(spec: String)
    case portDel(name: String)
    case capture(CaptureParameters)

    public var command: ControlCommand {
        switch self {
        case .hello: .hello
        case .stats: .stats
        case .show: .show
        case .fdbAdd: .fdbAdd
        case .fdbDel: .fdbDel
        case .portAdd, .portDel: .port
        case .capture: .capture
        }
    }
}
