/// The reply to a change that has nothing more to say (`fdb-add`, `fdb-del`).
public struct OKReply: Codable, Equatable, Sendable {
    public var ok: Bool

    public init() { ok = true }
}

/// The reply to `port`: the port added, or removed as it was just before it went.
public struct PortChangeReply: Codable, Equatable, Sendable {
    public var ok: Bool
    public var port: PortInfo

    public init(port: PortInfo) {
        ok = true
        self.port = port
    }
}

/// The reply to `fdb-flush`: how many entries went.
public struct FDBFlushReply: Codable, Equatable, Sendable {
    public var ok: Bool
    public var removed: Int

    public init(removed: Int) {
        ok = true
        self.removed = removed
    }
}
