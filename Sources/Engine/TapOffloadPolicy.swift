import Logging
import Model
import Platform
import Ports
import VhostUser

/// Gives each TAP the offloads the kernel may use towards Ferry (TUNSETOFFLOAD):
/// partial checksums and TCP/UDP super-frames of up to 64 KiB, whatever the
/// guests negotiated. A destination that cannot take such a frame gets it
/// adapted by the worker that forwards it (Worker+Offloads.swift): one guest
/// without GUEST_TSO costs segmentation for that guest only, instead of taking
/// TSO away from the host's side for everyone. A kernel that refuses USO
/// (before 6.2) gets TSO and checksums, one that refuses TSO checksums only.
///
/// Runs on the control thread; applies each TAP's offloads once.
final class TapOffloadPolicy: ControlLoopClient {
    let taps: [(name: String, port: TapPort)]
    let guests: [VhostDevice]
    let logger: Logger
    private var applied: [Bool]

    /// What is tried, in order, until the kernel takes one, for each `offloads=` level.
    static func choices(_ level: PortSpec.Offloads) -> [TapOffloads] {
        switch level {
        case .on: [TapPort.fullOffloads, [.checksum, .tso4, .tso6, .tsoECN], [.checksum]]
        case .csum: [[.checksum]]
        case .off: [[]]
        }
    }

    init(taps: [(name: String, port: TapPort)], guests: [VhostDevice], logger: Logger) {
        self.taps = taps
        self.guests = guests
        self.logger = logger
        applied = taps.map { $0.port.offloadLevel == .off }
    }

    var pollDescriptors: [Int32] { [] }
    func timeout(now: Double) -> Double? { nil }

    func service(now: Double) {
        for (i, tap) in taps.enumerated() where !applied[i] {
            applied[i] = true  // one attempt, one line, not one per control-loop pass
            var refusals: [String] = []
            let choices = Self.choices(tap.port.offloadLevel)
            for choice in choices {
                do {
                    try tap.port.setOffloads(choice)
                    let refused = refusals.isEmpty ? "" : " (refused: \(refusals.joined(separator: "; ")))"
                    logger.info("tap \(tap.name): offloads 0x\(String(choice.rawValue, radix: 16))\(refused)")
                    break
                } catch {
                    refusals.append("\(error)")
                }
            }
            if refusals.count == choices.count {
                logger.error("tap \(tap.name): no offloads: \(refusals.joined(separator: "; "))")
            }
        }
    }
}
