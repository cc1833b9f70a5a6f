import Glibc
import Model

extension SocketPermissions {
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
