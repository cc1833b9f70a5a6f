import Platform

/// The Prometheus endpoint (`metrics:` in the file, `--metrics` on the command line).
public struct MetricsSettings: Equatable, Sendable {
    /// `ADDRESS:PORT` to serve /metrics on, e.g. "127.0.0.1:9469" or "[::1]:9469"; nil: none.
    /// Its shape is checked by `ListenAddress`, the same parser that later binds it, so
    /// the file, `--metrics` and the running switch accept exactly the same text.
    public var listen: String?

    public init() {}

    /// The port Ferry's documentation and example config use.
    public static let examplePort = 9469

    /// Why `text` cannot be listened on, said the same way wherever it came from.
    public static func listenProblem(_ text: String) -> String {
        "metrics: '\(text)' is not IPV4:PORT or [IPV6]:PORT with a numeric address and a port 0...65535 "
            + "(e.g. 127.0.0.1:\(examplePort) or [::1]:\(examplePort); a name such as localhost is not looked up)"
    }
}
