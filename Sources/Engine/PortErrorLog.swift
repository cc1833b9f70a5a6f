import Glibc
import Logging

/// Logs a TAP's or an xdp uplink's error once, when it changes: the data path
/// only stores the errno (a relaxed store, no string, no syscall), and the
/// control thread looks once a second, so a TAP whose interface went down is
/// one warning, not one per burst. Packet ports have their own watch
/// (PacketPortWatch), which also follows the MTU.
final class PortErrorLog: ControlLoopClient {
    struct Watched {
        let name: String
        let what: String
        let lastError: () -> Int32
        var logged: Int32 = 0
    }

    static let interval = 1.0
    private var ports: [Watched]
    private let logger: Logger
    private var last = -Double.infinity

    init(ports: [Watched], logger: Logger) {
        self.ports = ports
        self.logger = logger
    }

    var pollDescriptors: [Int32] { [] }
    func timeout(now: Double) -> Double? { max(0, last + Self.interval - now) }

    func service(now: Double) {
        guard now - last >= Self.interval else { return }
        last = now
        for i in ports.indices {
            let error = ports[i].lastError()
            if error != 0 && error != ports[i].logged {
                logger.warning("port \(ports[i].name) (\(ports[i].what)): \(String(cString: strerror(error))) (errno \(error)); frames it could not take count as io_error")
            }
            ports[i].logged = error
        }
    }
}
