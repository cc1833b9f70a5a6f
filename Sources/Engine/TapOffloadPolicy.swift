import Logging
import Platform
import Ports
import VhostUser

/// Keeps what each TAP may hand Ferry (TUNSETOFFLOAD) within what every guest
/// accepts: the kernel may send a frame with a partial checksum only if every
/// running guest negotiated GUEST_CSUM, since any of them may receive it (a
/// flood reaches them all). No guest running: no offload. Ferry offers no
/// guest TSO, so checksum offload is the only one that can ever be on.
///
/// Runs on the control thread, which wakes at least every `ControlLoop.maxWait`;
/// a guest without GUEST_CSUM that starts while offload is on may see partial
/// checksums for at most that long (its driver drops them as bad).
final class TapOffloadPolicy: ControlLoopClient {
    let taps: [(name: String, port: TapPort)]
    let guests: [VhostDevice]
    let logger: Logger
    private var applied: [TapOffloads]

    init(taps: [(name: String, port: TapPort)], guests: [VhostDevice], logger: Logger) {
        self.taps = taps
        self.guests = guests
        self.logger = logger
        applied = taps.map { $0.port.device.offloads }
    }

    var pollDescriptors: [Int32] { [] }
    func timeout(now: Double) -> Double? { nil }

    func service(now: Double) {
        let running = guests.filter(\.isRunning)
        let want: TapOffloads = !running.isEmpty && running.allSatisfy { $0.features.contains(.guestCsum) }
            ? [.checksum] : []
        for (i, tap) in taps.enumerated() where applied[i] != want {
            do {
                try tap.port.setOffloads(want)
                applied[i] = want
                logger.info("tap \(tap.name): checksum offload \(want.isEmpty ? "off" : "on") (guests running: \(running.count))")
            } catch {
                logger.error("tap \(tap.name): cannot change offloads: \(error)")
                applied[i] = want  // one line, not one per control-loop pass
            }
        }
    }
}
