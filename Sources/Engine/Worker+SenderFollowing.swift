import Platform
import XDP

/// The worker follows the CPU of whoever sends into its TAPs
/// (`SenderFollowing`): on a wake-up by a TAP, one load of the sender
/// program's map and one getcpu, and a move only when the two differ.
extension Worker {
    /// From now on, wake-ups by a TAP read who sent the frame from `program`
    /// (the switch set it as every TAP's filter). A pinned worker ignores it.
    public func followSenders(of program: SenderCPUProgram) {
        guard cpu == nil else { return }
        whilePaused { senderCPU = program }
    }

    /// After a sleep of `slept` nanoseconds that a TAP ended.
    func followSender(afterSleeping slept: UInt64) {
        guard let senderCPU else { return }
        guard let target = SenderFollowing.destination(pinned: cpu != nil, allowed: allowedCPUs,
                                                       sender: senderCPU.lastSenderCPU,
                                                       runningOn: ThreadAffinity.currentCPU(), slept: slept),
              let allowedCPUs else { return }
        // Onto the sender's CPU, then free again: the next wake-up happens where
        // the worker last ran, and the scheduler may still move a busy worker.
        if ThreadAffinity.pin(to: target) != nil || ThreadAffinity.allow(allowedCPUs) != nil {
            // Not to be tried at every wake-up; the worker stays where it is.
            self.senderCPU = nil
            senderMoveFailures.add(1, ordering: .relaxed)
            _ = ThreadAffinity.allow(allowedCPUs)
            return
        }
        senderMoves.add(1, ordering: .relaxed)
    }
}
