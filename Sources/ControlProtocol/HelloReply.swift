/// The reply to `hello`: the protocol version both sides use from now on (the lower of
/// the client's and Ferry's), Ferry's own version and the commands it serves.
public struct HelloReply: Codable, Equatable, Sendable {
    public var version: Int
    public var ferry: String
    public var commands: [String]

    public init(version: Int, ferry: String, commands: [String] = ControlCommand.allCases.map(\.rawValue)) {
        self.version = version
        self.ferry = ferry
        self.commands = commands
    }
}
