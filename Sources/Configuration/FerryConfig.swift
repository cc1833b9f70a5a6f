import Ports

/// What a config file describes: the switch, its control socket and metrics endpoint,
/// and its ports (each a `PortSpec`, as `--port` would give it, always named).
public struct FerryConfig: Equatable, Sendable {
    public var switchSettings = SwitchSettings()
    public var control = ControlSocketSettings()
    public var metrics = MetricsSettings()
    public var ports: [PortSpec] = []

    public init() {}

    /// The top-level keys, in the order the documentation gives them.
    public static let sections = ["switch", "control", "metrics", "ports"]

    /// "3 ports (vm0 vhost, ferry0 tap, g gen)".
    public var summary: String {
        let list = ports.map { "\($0.name ?? "?") \($0.kindName)" }.joined(separator: ", ")
        return "\(ports.count) port\(ports.count == 1 ? "" : "s") (\(list))"
    }
}
