import Glibc
import Logging
import Platform

/// Looks after one port from the control thread, once a second: keeps the
/// port's frame limit in step with its interface's MTU (anyone may `ip link
/// set mtu`), and logs the port's error when it changes, once. The data path
/// only stores the errno (a relaxed store, no string, no syscall), so an
/// interface that went down or away is one warning, not one per burst.
public final class PortWatch: ControlLoopClient {
    static let interval = 1.0
    let name: String
    let port: Port
    let logger: Logger
    private var logged: Int32 = 0
    private var last = -Double.infinity

    public init(name: String, port: Port, logger: Logger) {
        self.name = name
        self.port = port
        self.logger = logger
    }

    public var pollDescriptors: [Int32] { [] }
    public func timeout(now: Double) -> Double? { max(0, last + Self.interval - now) }

    public func service(now: Double) {
        guard now - last >= Self.interval else { return }
        last = now
        port.refreshMTU()
        let error = port.lastError
        if error != 0 && error != logged {
            logger.warning("""
                port \(name) (\(port.hostDescription)): \(String(cString: strerror(error))) (errno \(error)); \
                \(port.errorConsequence)
                """)
        }
        logged = error
    }
}
