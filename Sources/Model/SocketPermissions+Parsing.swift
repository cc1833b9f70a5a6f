import Glibc

extension SocketPermissions {
    /// Why a value was refused, and which of the three keys it was, so a
    /// port spec or a config file can point at it.
    public struct Invalid: Error, Equatable {
        public let key: String
        public let problem: String
    }

    /// The three values as an operator writes them (a vhost port's `owner=`,
    /// `group=`, `mode=`; the config file's `control:` section), each checked;
    /// nil stays nil. The names are looked up only when the socket is made.
    public init(owner: String?, group: String?, modeText: String?) throws(Invalid) {
        if let owner, !Self.isAccountName(owner) {
            throw Invalid(key: "owner", problem: "owner '\(owner)' must be a user name or number")
        }
        if let group, !Self.isAccountName(group) {
            throw Invalid(key: "group", problem: "group '\(group)' must be a group name or number")
        }
        var bits: mode_t?
        if let modeText {
            guard let v = Self.mode(parsing: modeText) else {
                throw Invalid(key: "mode", problem: "mode '\(modeText)' must be octal permission bits 0...0777 (e.g. 0660)")
            }
            bits = v
        }
        self.init(owner: owner, group: group, mode: bits)
    }

    /// The mode as chmod(1) writes it ("0660"), nil when none was given.
    public var modeText: String? { mode.map(Self.octal) }

    /// What useradd accepts (letters, digits, '.', '_', '-', not starting with '-'), or a number.
    private static func isAccountName(_ name: String) -> Bool {
        guard !name.isEmpty, name.count <= 32, name.first != "-" else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
    }
}
