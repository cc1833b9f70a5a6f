/// Who may connect to a unix socket Ferry listens on: the owner, group and mode
/// the socket file is given after bind. Every field nil leaves the file as bind
/// made it (owned by Ferry's user, mode from the umask).
///
/// Only the description: a vhost port spec (`owner=`, `group=`, `mode=`) and the
/// config file's `control:` section carry it; applying it to the file belongs to
/// whoever binds the socket.
public struct SocketAccess: Equatable, Sendable {
    /// A user name or a numeric uid, as chown(1) takes it.
    public var owner: String?
    /// A group name or a numeric gid.
    public var group: String?
    /// Permission bits, e.g. 0o660.
    public var mode: UInt16?

    public init(owner: String? = nil, group: String? = nil, mode: UInt16? = nil) {
        self.owner = owner
        self.group = group
        self.mode = mode
    }

    public var isEmpty: Bool { owner == nil && group == nil && mode == nil }

    /// Why a value was refused, and which of the three keys it was.
    public struct Invalid: Error, Equatable {
        public let key: String
        public let problem: String
    }

    /// The three values as text, each checked; nil stays nil.
    public init(owner: String?, group: String?, mode: String?) throws(Invalid) {
        if let owner, !Self.isAccountName(owner) {
            throw Invalid(key: "owner", problem: "owner '\(owner)' must be a user name or number")
        }
        if let group, !Self.isAccountName(group) {
            throw Invalid(key: "group", problem: "group '\(group)' must be a group name or number")
        }
        var bits: UInt16?
        if let mode {
            // Octal whether or not it starts with 0, as chmod(1) reads it: "660" is 0o660.
            guard (1...4).contains(mode.count), let v = UInt16(mode, radix: 8), v <= 0o777 else {
                throw Invalid(key: "mode", problem: "mode '\(mode)' must be octal permission bits 0...0777 (e.g. 0660)")
            }
            bits = v
        }
        self.init(owner: owner, group: group, mode: bits)
    }

    /// The mode as chmod(1) writes it: "0660".
    public var modeText: String? {
        mode.map { m in
            let digits = String(m, radix: 8)
            return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
        }
    }

    /// What useradd accepts (letters, digits, '.', '_', '-', not starting with '-'),
    /// or a number: the name is looked up only when the socket is made.
    private static func isAccountName(_ name: String) -> Bool {
        guard !name.isEmpty, name.count <= 32, name.first != "-" else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
    }
}
