import ArgumentParser
import Glibc

/// How log lines look on stderr (`--log-format`).
enum LogFormat: String, CaseIterable, ExpressibleByArgument {
    /// `journal` when stderr is the systemd journal, `text` otherwise.
    case auto
    /// `2026-12-05T07:40:00.123Z notice ferry: ready ...`, for a terminal or a file.
    case text
    /// `<5>ferry: ready ...`: the line's syslog priority in the prefix journald reads
    /// (sd-daemon(3)); journald adds the time itself.
    case journal
    /// One JSON object per line: time, level, priority, label, message, metadata.
    case json

    /// What `auto` means here: `journal` when systemd connected stderr to the journal.
    /// systemd says so in JOURNAL_STREAM, the device and inode numbers of that stream
    /// ("DEV:INODE", decimal; systemd.exec(5)); compared with stderr's own, so a child
    /// whose stderr was redirected elsewhere does not take the variable for itself.
    func resolved(environment: String? = getenv("JOURNAL_STREAM").map { String(cString: $0) },
                  standardError: (dev: UInt64, inode: UInt64)? = Self.standardErrorIdentity()) -> LogFormat {
        guard self == .auto else { return self }
        guard let environment, let standardError else { return .text }
        let parts = environment.split(separator: ":")
        guard parts.count == 2, let dev = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return .text }
        return dev == standardError.dev && inode == standardError.inode ? .journal : .text
    }

    static func standardErrorIdentity() -> (dev: UInt64, inode: UInt64)? {
        var status = stat()
        guard fstat(STDERR_FILENO, &status) == 0 else { return nil }
        return (UInt64(status.st_dev), UInt64(status.st_ino))
    }
}
