import Platform
import XDP

/// The worker follows the CPU of whoever sends into its TAPs
/// (`SenderFollowing`): on a wake-up by a TAP, one load of the sender
/// program's map; before the next sleep, one getcpu, and a move when the
/// worker is not on the sender's CPU.
extension Worker {
    /// From now on, wake-ups by a TAP read who sent the frame from `program`
    /// (the switch set it as every TAP's filter). A pinned worker ignores it.
    public func followSenders(of program: SenderCPUProgram) {
        guard cpu == nil else { return }
        whilePaused { senderCPU = program }
    }

    /// After a sleep of `slept` nanoseconds that a TAP ended: decides where to
    /// go, and goes only when the worker next falls idle (`moveToSenderBeforeSleeping`).
    /// A move takes ~40-80 µs (the migration thread, a wake-up on the other
    /// CPU, cold caches there); made at once, it stood between the frame that
    /// woke the worker and its answer (the first ping of a run, 254 µs traced).
    /// Made before the next sleep, it costs the CPU time the worker would have slept.
    func followSender(afterSleeping slept: UInt64) {
        guard let senderCPU else { return }
        senderCPUToFollow = SenderFollowing.destination(pinned: cpu != nil, allowed: allowedCPUs,
                                                        sender: senderCPU.lastSenderCPU, slept: slept)
    }

    /// The move `followSender` decided, made now that the worker is about to sleep.
    func moveToSenderBeforeSleeping() {
        guard let target = senderCPUToFollow else { return }
        senderCPUToFollow = nil
        // The CPU is read here only, once per move: the worker may have moved since the wake-up.
        guard let allowedCPUs, SenderFollowing.moves(to: target, from: ThreadAffinity.currentCPU()) else { return }
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
