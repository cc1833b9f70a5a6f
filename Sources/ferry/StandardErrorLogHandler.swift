import Foundation
import Glibc
import Logging
import Platform

/// Ferry's log lines on stderr, in one of the `LogFormat`s. Each line is one write(2), so
/// lines from several threads never interleave (stderr is a pipe or the journal's
/// socket under a supervisor; a line is far below PIPE_BUF).
struct StandardErrorLogHandler: LogHandler {
    let label: String
    let format: LogFormat
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(label: String, format: LogFormat, level: Logger.Level) {
        self.label = label
        self.format = format
        logLevel = level
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { $1 } }
        if let own = event.metadata { all.merge(own) { $1 } }
        let line = Self.line(format: format, label: label, level: event.level, message: "\(event.message)",
                             metadata: all, time: Date())
        var bytes = Array(line.utf8)
        bytes.append(10)
        _ = DescriptorIO.write(STDERR_FILENO, bytes[...])
    }

    /// The syslog priority of a level (RFC 5424 §6.2.1), which journald files the line under.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    static func line(format: LogFormat, label: String, level: Logger.Level, message: String,
                     metadata: Logger.Metadata, time: Date) -> String {
        let pairs = metadata.sorted { $0.key < $1.key }
        let tail = pairs.isEmpty ? "" : " " + pairs.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        switch format {
        case .journal:
            return "<\(priority(level))>\(label): \(message)\(tail)"
        case .json:
            var object: [String: Any] = ["time": timestamp(time), "level": level.rawValue,
                                         "priority": priority(level), "label": label, "message": message]
            for (key, value) in pairs where object[key] == nil { object[key] = "\(value)" }
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
                ?? Data()
            return String(decoding: data, as: UTF8.self)
        case .text, .auto:
            return "\(timestamp(time)) \(level.rawValue) \(label): \(message)\(tail)"
        }
    }

    /// RFC 3339 in UTC with milliseconds: sortable, and the same in every time zone.
    static func timestamp(_ time: Date) -> String {
        let milliseconds = Int64((time.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec),
                      Int(milliseconds % 1000))
    }
}
