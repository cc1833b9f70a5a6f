import Logging
import Model
import Platform
import Switching
import VhostUser

/// Forgets the addresses learned on a vhost port when its guest stops (the
/// front-end went away or reset the device), as a Linux bridge flushes a port
/// whose link goes down: a guest that moved elsewhere (another port, another
/// host behind an uplink) would otherwise keep receiving its unicast into a
/// dead port until the entries aged out, 300 s by default. Static entries stay.
///
/// Runs on the control thread, the database's only writer; it notices a stop
/// within one pass of the control loop (at most `ControlLoop.maxWait`).
final class GuestDepartureFlush: ControlLoopClient {
    let guests: [(index: PortIndex, name: String, device: VhostDevice)]
    let database: ForwardingDatabase
    let logger: Logger
    private var wasRunning: [Bool]

    init(guests: [(index: PortIndex, name: String, device: VhostDevice)], database: ForwardingDatabase, logger: Logger) {
        self.guests = guests
        self.database = database
        self.logger = logger
        wasRunning = guests.map { $0.device.isRunning }
    }

    var pollDescriptors: [Int32] { [] }
    func timeout(now: Double) -> Double? { nil }

    func service(now: Double) {
        for (i, guest) in guests.enumerated() {
            let running = guest.device.isRunning
            defer { wasRunning[i] = running }
            guard wasRunning[i] && !running else { continue }
            let removed = database.flush(port: guest.index)
            if removed > 0 { logger.info("port \(guest.name): guest stopped, \(removed) learned addresses forgotten") }
        }
    }
}
