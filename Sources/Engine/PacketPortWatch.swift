import Glibc
import Logging
import Ports

/// Looks after packet ports from the control thread, once a second: keeps
/// each port's frame limit in step with its interface's MTU (anyone may
/// `ip link set mtu`), and logs a port's error when it changes, once, so an
/// interface that went away is one line in the log, not one per burst.
final class PacketPortWatch: ControlLoopClient {
    static let interval = 1.0
    let ports: [(name: String, port: PacketPort)]
    let logger: Logger
    private var logged: [Int32]
    private var last = -Double.infinity

    init(ports: [(name: String, port: PacketPort)], logger: Logger) {
        self.ports = ports
        self.logger = logger
        logged = ports.map { _ in 0 }
    }

    var pollDescriptors: [Int32] { [] }
    func timeout(now: Double) -> Double? { max(0, last + Self.interval - now) }

    func service(now: Double) {
        guard now - last >= Self.interval else { return }
        last = now
        for (i, (name, port)) in ports.enumerated() {
            port.refreshMTU()
            let error = port.lastError
            if error != 0 && error != logged[i] {
                logger.warning("port \(name) (packet \(port.interface)): \(String(cString: strerror(error))) (errno \(error)); frames for it count as io_error while the interface is down (one deleted and created again needs the port opened again)")
            }
            logged[i] = error
        }
    }
}
