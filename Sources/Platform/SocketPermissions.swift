import Glibc

/// Who may connect to a unix socket Ferry listens on, as an operator writes it:
/// the socket file's owner and group (a name or a number) and its mode. Linux
/// checks write permission on the socket file at connect(2) (unix(7)), so these
/// decide whether QEMU running as another user (as libvirt runs it) gets in.
public struct SocketPermissions: Equatable, Sendable, CustomStringConvertible {
    public var owner: String?
    public var group: String?
    public var mode: mode_t?

    public init(owner: String? = nil, group: String? = nil, mode: mode_t? = nil) {
        self.owner = owner
        self.group = group
        self.mode = mode
    }

    /// Nothing asked for: the socket is left as bind(2) made it (owned by Ferry's user,
    /// mode 0777 & ~umask — with the usual umask 022, only that user may connect).
    public var isDefault: Bool { owner == nil && group == nil && mode == nil }

    /// The mode when an owner or a group is given without one: read and write for
    /// both, so that naming a group is enough to let its members in.
    public static let defaultMode: mode_t = 0o660

    public var description: String {
        var parts: [String] = []
        if let owner { parts.append("owner=\(owner)") }
        if let group { parts.append("group=\(group)") }
        if let mode { parts.append("mode=\(Self.octal(mode))") }
        return parts.isEmpty ? "default" : parts.joined(separator: ",")
    }

    /// "0660", "660" or "0o660" → 0o660; nil unless octal digits within 0...0o777.
    /// Set-id and sticky bits mean nothing on a socket, so they are refused rather than ignored.
    public static func mode(parsing text: String) -> mode_t? {
        var digits = Substring(text)
        if digits.hasPrefix("0o") { digits = digits.dropFirst(2) }
        guard !digits.isEmpty, digits.count <= 4, let value = mode_t(digits, radix: 8), value <= 0o777 else { return nil }
        return value
    }

    public static func octal(_ mode: mode_t) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    /// The numbers chown(2) and chmod(2) take.
    public struct Resolved: Equatable, Sendable {
        public let owner: uid_t?
        public let group: gid_t?
        public let mode: mode_t

        public init(owner: uid_t?, group: gid_t?, mode: mode_t) {
            self.owner = owner
            self.group = group
            self.mode = mode
        }
    }

    public struct ResolveError: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// Looks the names up in the user and group databases (getpwnam_r, getgrnam_r:
    /// /etc/passwd, NSS); a number is taken as an id. nil when nothing was asked for.
    public func resolved() throws(ResolveError) -> Resolved? {
        guard !isDefault else { return nil }
        let uid = try owner.map { name throws(ResolveError) in try Self.userID(name) }
        let gid = try group.map { name throws(ResolveError) in try Self.groupID(name) }
        return Resolved(owner: uid, group: gid, mode: mode ?? Self.defaultMode)
    }

    static func userID(_ name: String) throws(ResolveError) -> uid_t {
        if let id = uid_t(name) { return id }
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        let code = getpwnam_r(name, &entry, &buffer, buffer.count, &result)
        guard code == 0 else {
            throw ResolveError(description: "cannot look up user '\(name)': \(String(cString: strerror(code)))")
        }
        guard let found = result else { throw ResolveError(description: "unknown user '\(name)' (not in the user database)") }
        return found.pointee.pw_uid
    }

    static func groupID(_ name: String) throws(ResolveError) -> gid_t {
        if let id = gid_t(name) { return id }
        var entry = Glibc.group()
        var result: UnsafeMutablePointer<Glibc.group>?
        // Large groups list every member in this buffer.
        var buffer = [CChar](repeating: 0, count: 65536)
        let code = getgrnam_r(name, &entry, &buffer, buffer.count, &result)
        guard code == 0 else {
            throw ResolveError(description: "cannot look up group '\(name)': \(String(cString: strerror(code)))")
        }
        guard let found = result else { throw ResolveError(description: "unknown group '\(name)' (not in the group database)") }
        return found.pointee.gr_gid
    }
}
