import Model

/// What a config file describes: the switch, its control socket and metrics endpoint,
/// its ports (each a `PortSpec`, as `--port` would give it, always named) and the static
/// forwarding entries to install on them.
public struct FerryConfig: Equatable, Sendable {
    public var switchSettings = SwitchSettings()
    public var control = ControlSocketSettings()
    public var metrics = MetricsSettings()
    public var ports: [PortSpec] = []
    /// `fdb:`, in file order.
    public var staticEntries: [StaticFDBEntry] = []

    public init() {}

    /// The top-level keys, in the order the documentation gives them.
    public static let sections = ["switch", "control", "metrics", "ports", "fdb"]

    /// "3 ports (vm0 vhost, ferry0 tap, g gen)", then ", 2 static addresses" when there are any.
    public var summary: String {
        let list = ports.map { "\($0.name ?? "?") \($0.kindName)" }.joined(separator: ", ")
        let entries = staticEntries.isEmpty ? ""
            : ", \(staticEntries.count) static address\(staticEntries.count == 1 ? "" : "es")"
        return "\(ports.count) port\(ports.count == 1 ? "" : "s") (\(list))" + entries
    }
}
