import Glibc
import Platform

/// The directory Ferry's sockets live in (/run/ferry by default): made when it is
/// missing, left alone when it exists (systemd's RuntimeDirectory= or an operator
/// made it, with the mode they chose).
///
/// 0755, not 0750 with a group: Linux checks write permission on the socket file
/// itself at connect(2), so each socket's own owner, group and mode already decide
/// who may connect. A 0750 directory would also lock out a QEMU running as another
/// user whose vhost-user sockets share the directory with the control socket.
enum RunDirectory {
    static let mode: mode_t = 0o755

    /// "/run/ferry/vm0.sock" → "/run/ferry"; "vm0.sock" → ".".
    static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Makes `directory` (one level: its parent must exist); true when it was made here.
    static func create(_ directory: String) throws(SystemError) -> Bool {
        var info = stat()
        if stat(directory, &info) == 0 { return false }
        do throws(SystemError) {
            _ = try syscall("mkdir(\(directory))") { mkdir(directory, mode) }
        } catch where error.errno == EEXIST {
            return false  // another process made it meanwhile
        }
        // mkdir's mode is filtered by the umask; the directory gets exactly `mode`.
        _ = try syscall("chmod(\(directory))") { chmod(directory, mode) }
        return true
    }
}
