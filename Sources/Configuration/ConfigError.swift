/// One thing wrong with a config file, and where: `ferry.yaml:12:14: port 'vm0': queues must be 1...128`.
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public let file: String
    /// 1-based, as editors count; nil when the file as a whole is at fault (cannot be read).
    public let line: Int?
    public let column: Int?
    public let message: String

    public init(file: String, line: Int?, column: Int?, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String {
        guard let line, let column else { return "\(file): \(message)" }
        return "\(file):\(line):\(column): \(message)"
    }
}

/// Everything wrong with a config file, in file order: one pass reports them all,
/// so fixing a file takes one round of `ferry check`, not one per mistake.
public struct ConfigErrors: Error, Equatable, Sendable, CustomStringConvertible {
    public let errors: [ConfigError]

    public init(_ errors: [ConfigError]) { self.errors = errors }

    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
