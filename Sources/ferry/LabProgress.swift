import Foundation
import Glibc

/// The lab's live line on a terminal (stderr): the trial, its rate and loss so far, the
/// time elapsed and about how much is left. Nothing when stderr is not a terminal.
final class LabProgress {
    let enabled: Bool
    private let start = Date()
    /// Seconds the trials still to come will take, as the procedure estimates them.
    var remaining: Double = 0
    /// The trial under way, counted from 1.
    var trial = 0

    init(enabled: Bool) { self.enabled = enabled }

    func show(_ purpose: String, _ offeredPPS: Double, _ loss: Double, _ elapsed: Double) {
        guard enabled else { return }
        let total = Date().timeIntervalSince(start)
        let line = "trial \(trial) \(purpose): \(LabResult.pps(offeredPPS)) loss \(LabResult.percent(loss))  "
            + "elapsed \(Int(total))s  remaining ~\(Int(max(0, remaining - elapsed).rounded()))s"
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
    }

    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}
