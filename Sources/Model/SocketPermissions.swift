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
}
