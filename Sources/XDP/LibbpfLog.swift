import CBPF
import Glibc
import Logging
import Synchronization

/// libbpf writes its messages (the verifier's log among them) to stderr unless
/// given a print function. That function is a C function pointer and cannot
/// capture a logger, so the logger lives here, process-wide: the last attach
/// sets it.
enum LibbpfLog {
    private static let logger = Mutex<Logger?>(nil)
    /// The kernel's extack text libbpf last printed ("Kernel error message: …"):
    /// it says why an attach failed better than the errno does.
    private static let kernelMessage = Mutex<String?>(nil)
    private static let kernelMessagePrefix = "libbpf: Kernel error message: "

    private static let installed: Void = {
        _ = libbpf_set_print { level, format, arguments in
            guard let format, let arguments, let logger = LibbpfLog.logger.withLock({ $0 }) else { return 0 }
            let swiftLevel: Logger.Level = switch level {
            case LIBBPF_WARN: .warning
            case LIBBPF_INFO: .debug
            default: .trace
            }
            // Debug output (every relocation, every feature probe) is noise
            // unless asked for; skip formatting it.
            guard logger.logLevel <= swiftLevel else { return 0 }
            // A va_list can be read once, and Swift has no va_copy: one
            // generous buffer; a longer verifier log is cut.
            var buffer = [CChar](repeating: 0, count: 32 * 1024)
            let written = vsnprintf(&buffer, buffer.count, format, arguments)
            let text = String(String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
                .trimmingSuffixNewlines)
            if text.hasPrefix(kernelMessagePrefix) {
                // The caller puts it into its error or log line; logged alone it would be a second line.
                kernelMessage.withLock { $0 = String(text.dropFirst(kernelMessagePrefix.count)) }
                logger.debug("\(text)")
            } else {
                logger.log(level: swiftLevel, "\(text)")
            }
            return written
        }
    }()

    /// Routes libbpf's warnings to `logger` (info as debug, debug as trace).
    static func route(to logger: Logger) {
        self.logger.withLock { $0 = logger }
        installed
    }
}

extension LibbpfLog {
    /// Runs `call` and returns, with its result, the kernel's message printed meanwhile, if any.
    static func withKernelMessage<T>(_ call: () -> T) -> (T, String?) {
        kernelMessage.withLock { $0 = nil }
        let result = call()
        return (result, kernelMessage.withLock { message in
            defer { message = nil }
            return message
        })
    }
}

extension String {
    fileprivate var trimmingSuffixNewlines: Substring {
        var text = self[...]
        while text.last == "\n" { text = text.dropLast() }
        return text
    }
}
