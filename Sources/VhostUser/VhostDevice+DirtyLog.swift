import Logging
import Virtio

// Live migration, the front-end's half (vhost-user.rst, "Migration"): it hands
// over a log (SET_LOG_BASE, a memfd with LOG_SHMFD), turns logging on with
// VHOST_F_LOG_ALL in SET_FEATURES, and asks per ring, with VHOST_VRING_F_LOG in
// SET_VRING_ADDR, for the used ring's writes to be logged at log_guest_addr.
// The log must cover every guest page and every logged used ring: checked when
// it arrives, when a ring's log address arrives, and when the memory table
// changes. Whatever the data path reads of this is set while it is paused.
extension VhostDevice {
    /// VHOST_VRING_F_LOG (linux/vhost_types.h): bit 0 of SET_VRING_ADDR's flags.
    static let vringLogFlag: UInt32 = 1 << 0

    /// Maps the log a SET_LOG_BASE carries and hands it to the rings. A log that
    /// cannot be mapped, or does not cover guest memory and the logged rings, is
    /// refused and the old one dropped: the front-end believes it replaced it.
    func setDirtyLog(size: UInt64, offset: UInt64, message m: VhostUserMessage) throws(Refusal) {
        guard protocolFeatures.contains(.logShmfd) else {
            throw Refusal("SET_LOG_BASE without VHOST_USER_PROTOCOL_F_LOG_SHMFD negotiated")
        }
        guard let file = m.descriptors.take(0) else { throw Refusal("SET_LOG_BASE without a descriptor") }
        let log: DirtyPageLog
        do {
            log = try DirtyPageLog(file: file, size: size, offset: offset)
            try check(log, covers: memory)
        } catch {
            dropDirtyLog()
            throw Refusal("dirty log rejected: \(error)")
        }
        gate.whilePaused {
            dirtyLog = log
            applyDirtyLog()
        }
        logger.info("vhost-user \(name): dirty log of \(size) bytes (guest addresses below 0x\(String(log.coveredEnd, radix: 16)))")
    }

    /// Where queue `q`'s used ring is logged, if its SET_VRING_ADDR asks for that;
    /// refused if the address leaves no room for the ring or lies past the log.
    func usedRingLogAddress(of a: VringAddress, queue q: SplitVirtqueue) throws(Refusal) -> GuestAddress? {
        guard a.flags & Self.vringLogFlag != 0 else { return nil }
        let (_, overflow) = a.logGuestAddr.addingReportingOverflow(SplitVirtqueue.largestUsedRingBytes)
        guard !overflow else {
            throw Refusal("used ring log address 0x\(String(a.logGuestAddr, radix: 16)) for queue \(a.index) leaves no room for the ring")
        }
        if let dirtyLog, !dirtyLog.covers(a.logGuestAddr, length: q.usedRingBytes) {
            throw Refusal("\(DirtyPageLogError.doesNotCover(what: "queue \(a.index)'s used ring", end: a.logGuestAddr + q.usedRingBytes, covered: dirtyLog.coveredEnd))")
        }
        return GuestAddress(a.logGuestAddr)
    }

    /// Refuses a memory table the current log does not cover while logging is on;
    /// with logging off a log that no longer covers memory is dropped (the
    /// front-end sends a new one before it logs again).
    func checkDirtyLog(covers newMemory: GuestMemory) throws(Refusal) {
        guard let dirtyLog else { return }
        do { try check(dirtyLog, covers: newMemory) } catch {
            if features.contains(.logAll) { throw Refusal("memory table rejected while logging: \(error)") }
            dropDirtyLog()
        }
    }

    /// The log must reach past every guest page and every logged used ring
    /// (vhost-user.rst: "large enough to cover all known guest addresses",
    /// and the used ring's last byte "must fall within the size").
    private func check(_ log: DirtyPageLog, covers memory: GuestMemory?) throws(DirtyPageLogError) {
        for (i, r) in (memory?.regions ?? []).enumerated() where !log.covers(r.guestPhysicalAddress, length: r.size) {
            throw .doesNotCover(what: "memory region \(i)", end: r.guestPhysicalAddress &+ r.size, covered: log.coveredEnd)
        }
        for q in queues {
            guard let address = usedRingLogAddress(queue: q.index) else { continue }
            if !log.covers(address.rawValue, length: q.usedRingBytes) {
                throw .doesNotCover(what: "queue \(q.index)'s used ring", end: address.rawValue &+ q.usedRingBytes,
                                    covered: log.coveredEnd)
            }
        }
    }

    private func dropDirtyLog() {
        guard dirtyLog != nil else { return }
        gate.whilePaused {
            dirtyLog = nil
            applyDirtyLog()
        }
    }
}
