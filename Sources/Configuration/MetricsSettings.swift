/// The Prometheus endpoint (`metrics:` in the file, `--metrics` on the command line).
public struct MetricsSettings: Equatable, Sendable {
    /// `ADDRESS:PORT` to serve /metrics on, e.g. "127.0.0.1:9469" or "[::1]:9469"; nil: none.
    /// Checked for its shape only; the address is bound when the switch starts.
    public var listen: String?

    public init() {}

    /// ADDRESS:PORT with a port 1...65535; an IPv6 address in brackets.
    public static func isListenAddress(_ text: String) -> Bool {
        guard let colon = text.lastIndex(of: ":") else { return false }
        let host = text[..<colon]
        guard let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port), !host.isEmpty else {
            return false
        }
        if host.first == "[" { return host.last == "]" && host.count > 2 }
        return !host.contains(":") && !host.contains(where: \.isWhitespace)
    }
}
