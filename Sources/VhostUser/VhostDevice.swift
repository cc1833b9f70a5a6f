import Glibc
import Synchronization
import Logging
import Packets
import Platform
import Virtio

/// The back-end side of one vhost-user virtio-net device: the state that the
/// front-end's messages build up (features, memory table, rings), checked for
/// meaning message by message. The codec has already checked syntax.
///
/// Runs on the control thread. Whatever the data path reads is changed only
/// inside `gate.whilePaused`, so a worker never sees a half-made change.
public final class VhostDevice: @unchecked Sendable {
    public let name: String
    public let queuePairs: Int
    /// Virtio-net numbering: 2k is receiveq k+1 (Ferry writes), 2k+1 is transmitq k+1 (Ferry reads).
    /// Each queue has a ring of either layout; `ring(_:)` is the one the driver negotiated.
    public let queues: [SplitVirtqueue]
    public let packedQueues: [PackedVirtqueue]
    /// The driver took VIRTIO_F_RING_PACKED (changed only while workers are paused).
    public private(set) var packedRings = false
    public var gate: DataPathGate
    let logger: Logger

    public private(set) var features = VirtioNetFeatures()
    public private(set) var protocolFeatures = VhostUserProtocolFeatures()
    public private(set) var memory: GuestMemory?
    public private(set) var mtu: Int = 1500
    private var status: UInt8 = 0
    /// The eventfds the front-end handed over per queue; a slot closes what it
    /// held when it gets a new one, on reset and with the device.
    private let kicks: [DescriptorSlot]
    private let calls: [DescriptorSlot]
    private let errs: [DescriptorSlot]
    private var addressesSet: [Bool]
    /// Per queue, until the ring is seen to move: when it started and its avail index then.
    private var watch: [(avail: UInt16, kickedAt: Double?)?]
    /// How long a kicked ring may stay still before its memory is called unshared.
    public static let unsharedMemoryGrace = 2.0
    /// Why the device stopped forwarding, if it did. Written by the control
    /// thread or by the worker (which owns the data path while it runs), read by both.
    private let broken = Mutex<String?>(nil)
    public var brokenReason: String? { broken.withLock { $0 } }

    /// The front-end's dirty log (SET_LOG_BASE), used while it asks for logging (VHOST_F_LOG_ALL).
    public internal(set) var dirtyLog: DirtyPageLog?
    /// Per queue, where its used ring is logged, when its SET_VRING_ADDR set VHOST_VRING_F_LOG.
    private var usedRingLogAddresses: [GuestAddress?]
    /// A MAC a SEND_RARP asked to announce (the low 48 bits, bit 48 set), 0 for none;
    /// the worker that pulls pair 0 takes it (VhostDevice+Announcement.swift).
    @usableFromInline let pendingAnnouncement = Atomic<UInt64>(0)

    public static let offeredProtocolFeatures: VhostUserProtocolFeatures = [
        .mq, .logShmfd, .rarp, .replyAck, .mtu, .configureMemSlots, .status,
    ]
    /// What GET_MAX_MEM_SLOTS answers: as many regions as a table may hold, so an
    /// ADD_MEM_REG past it is refused by the table itself (`GuestMemoryError.tooManyRegions`).
    public static let maxMemorySlots = GuestMemory.maxRegions

    public init(name: String, queuePairs: Int = 1, gate: DataPathGate = UngatedDataPath(), logger: Logger,
                withheldFeatures: VirtioNetFeatures = []) {
        self.withheldFeatures = withheldFeatures
        precondition(queuePairs >= 1 && queuePairs <= 128)
        self.name = name
        self.queuePairs = queuePairs
        self.queues = (0..<(2 * queuePairs)).map { SplitVirtqueue(index: $0) }
        self.packedQueues = (0..<(2 * queuePairs)).map { PackedVirtqueue(index: $0) }
        self.gate = gate
        self.logger = logger
        kicks = (0..<(2 * queuePairs)).map { _ in DescriptorSlot() }
        calls = (0..<(2 * queuePairs)).map { _ in DescriptorSlot() }
        errs = (0..<(2 * queuePairs)).map { _ in DescriptorSlot() }
        addressesSet = Array(repeating: false, count: 2 * queuePairs)
        watch = Array(repeating: nil, count: 2 * queuePairs)
        usedRingLogAddresses = Array(repeating: nil, count: 2 * queuePairs)
    }

    /// True when at least one queue pair moves frames.
    public var isRunning: Bool { queues.contains { $0.isRunning } || packedQueues.contains { $0.isRunning } }

    /// Queue `index`'s ring in the layout negotiated, for the data path.
    @inlinable
    public func ring(_ index: Int) -> Virtqueue {
        packedRings ? .packed(packedQueues[index]) : .split(queues[index])
    }

    /// `ring(_:)` for a holder of both of a queue's rings (Ports'
    /// `VhostQueuePair`, which keeps them to borrow them per burst without
    /// the arrays' retains): `body` of the one in the layout negotiated. The
    /// device decides the layout here and in `ring(_:)`, side by side, not in
    /// one function: each branch hands `body` its ring as built, borrowed,
    /// where a ring returned from the two branches was retained and released
    /// around every use; and `ring(_:)` built on this closure made the
    /// optimizer stop inlining its callers into the worker's burst functions
    /// (objdump, docs/PERFORMANCE.md "One layout dispatch for the vhost rings").
    /// The rings are autoclosures so that only the negotiated one is read.
    @inlinable @inline(__always)
    public func withNegotiatedRing<Result>(split: @autoclosure () -> SplitVirtqueue,
                                           packed: @autoclosure () -> PackedVirtqueue,
                                           _ body: (Virtqueue) -> Result) -> Result {
        packedRings ? body(.packed(packed())) : body(.split(split()))
    }

    /// Queue `index`'s ring in the layout negotiated, for the control plane.
    public func control(_ index: Int) -> any VirtqueueControl {
        packedRings ? packedQueues[index] : queues[index]
    }

    /// Both of queue `index`'s rings: every per-ring setting goes to each.
    private func bothLayouts(_ index: Int) -> [any VirtqueueControl] { [queues[index], packedQueues[index]] }

    /// Every ring of every queue, in both layouts.
    private var allRings: [any VirtqueueControl] { queues + packedQueues }
    public var isBroken: Bool { brokenReason != nil }

    /// Features left out of what Ferry offers (a port's `offloads=off|csum`).
    public let withheldFeatures: VirtioNetFeatures
    /// Virtio-net's features and VHOST_F_LOG_ALL: Ferry logs its writes for a live migration.
    public var offeredFeatures: UInt64 {
        VirtioNetFeatures.offered.union(.logAll).subtracting(withheldFeatures).rawValue
    }

    // MARK: - Messages

    /// What the connection must do after a message.
    public enum Outcome: Equatable {
        case reply([UInt8])
        case none
        /// The front-end broke the protocol badly enough that the connection must go.
        case close(String)
    }

    /// Applies one message and returns the reply owed, if any.
    public func handle(_ message: VhostUserMessage) -> Outcome {
        logger.debug("vhost-user \(name): \(message.request.specName) \(message.payload)")
        let result = apply(message)
        switch result {
        case .success(let payload?):
            return .reply(MessageEncoder.reply(to: message.request, payload: payload))
        case .success(nil):
            return ackIfAsked(message, ok: true)
        case .failure(let error):
            logger.error("vhost-user \(name): \(message.request.specName) refused: \(error)")
            return refusal(requestNumber: message.request.rawValue, needsReply: message.needsReply,
                           why: "\(message.request.specName) refused: \(error)")
        }
    }

    /// Called for a message the codec refused but whose framing survived.
    public func refused(_ error: VhostUserProtocolError) -> Outcome {
        logger.error("vhost-user \(name): \(error)")
        if error.isFatal { return .close(error.description) }
        return refusal(requestNumber: error.requestNumber, needsReply: error.needsReply, why: error.description)
    }

    /// A refused message gets a failing REPLY_ACK where the front-end asked for
    /// one and may (vhost-user.rst, REPLY_ACK: not for requests that answer with
    /// a payload). Otherwise the front-end cannot be told, and a front-end that
    /// goes on as if the message took effect would drive a device in a state it
    /// does not know: the connection is closed and the device reset.
    private func refusal(requestNumber: UInt32, needsReply: Bool, why: String) -> Outcome {
        let answersWithPayload = VhostUserRequest(rawValue: requestNumber).map(Self.repliesWithPayload) ?? false
        if needsReply && protocolFeatures.contains(.replyAck) && !answersWithPayload {
            return .reply(MessageEncoder.ack(to: requestNumber, status: 1))
        }
        return .close(why)
    }

    private func ackIfAsked(_ message: VhostUserMessage, ok: Bool) -> Outcome {
        guard message.needsReply, protocolFeatures.contains(.replyAck),
              !VhostDevice.repliesWithPayload(message.request) else { return .none }
        return .reply(MessageEncoder.ack(to: message.request.rawValue, status: ok ? 0 : 1))
    }

    static func repliesWithPayload(_ r: VhostUserRequest) -> Bool {
        switch r {
        case .getFeatures, .getProtocolFeatures, .getVringBase, .getQueueNum, .getMaxMemSlots, .getStatus,
             .setLogBase: true
        default: false
        }
    }

    /// Errors that refuse a message without breaking the device.
    public struct Refusal: Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }

    /// The rings of queue `index`, both layouts, once it is known to exist.
    private func queue(_ index: UInt32) throws(Refusal) -> [any VirtqueueControl] {
        guard Int(index) < queues.count else {
            throw Refusal("queue \(index) does not exist (\(queues.count) queues)")
        }
        return bothLayouts(Int(index))
    }

    private func apply(_ m: VhostUserMessage) -> Result<VhostUserMessage.Payload?, Refusal> {
        do throws(Refusal) {
            return .success(try applyOrThrow(m))
        } catch {
            return .failure(error)
        }
    }

    private func applyOrThrow(_ m: VhostUserMessage) throws(Refusal) -> VhostUserMessage.Payload? {
        switch (m.request, m.payload) {
        case (.getFeatures, _):
            return .u64(offeredFeatures)
        case (.setFeatures, .u64(let value)):
            let unknown = value & ~offeredFeatures
            guard unknown == 0 else { throw Refusal("features 0x\(String(unknown, radix: 16)) were not offered") }
            let f = VirtioNetFeatures(rawValue: value)
            let wasLogging = features.contains(.logAll)
            gate.whilePaused {
                features = f
                let packed = f.contains(.ringPacked)
                if packed != packedRings {
                    // The other layout's rings stop where they were; the new ones start when ready.
                    for q in allRings where q.isRunning { q.ringBase = q.stopRing() }
                    packedRings = packed
                }
                for q in allRings { q.configuration.negotiate(f) }
                applyDirtyLog()
            }
            if f.contains(.logAll) != wasLogging {
                logger.info("vhost-user \(name): dirty logging \(wasLogging ? "off" : "on")\(dirtyLog == nil && !wasLogging ? " (no log yet)" : "")")
            }
            logger.info("vhost-user \(name): features 0x\(String(value, radix: 16)) (header \(f.netHeaderLength) B, mergeable \(f.contains(.mergeableRxBuffers)), event-idx \(f.contains(.eventIndex)), \(f.contains(.ringPacked) ? "packed" : "split") rings)")
            return nil
        case (.getProtocolFeatures, _):
            return .u64(Self.offeredProtocolFeatures.rawValue)
        case (.setProtocolFeatures, .u64(let value)):
            let wanted = VhostUserProtocolFeatures(rawValue: value)
            guard Self.offeredProtocolFeatures.isSuperset(of: wanted) else {
                throw Refusal("protocol features 0x\(String(value, radix: 16)) include some not offered")
            }
            protocolFeatures = wanted
            return nil
        case (.setOwner, _):
            return nil
        case (.resetOwner, _):
            reset(reason: "RESET_OWNER")
            return nil
        case (.getQueueNum, _):
            return .u64(UInt64(queuePairs))
        case (.getMaxMemSlots, _):
            return .u64(UInt64(Self.maxMemorySlots))
        case (.setMemTable, .memoryTable(let regions)):
            try setMemoryTable(regions, message: m)
            return nil
        case (.addMemReg, .memoryRegion(let region)):
            try addRegion(region, message: m)
            return nil
        case (.remMemReg, .memoryRegion(let region)):
            try removeRegion(region)
            return nil
        case (.setVringNum, .vringState(let index, let num)):
            let rings = try queue(index)
            if packedRings {
                // §2.8: a packed ring needs no power of two.
                guard num > 0, num <= PackedVirtqueue.maxSize else {
                    markBroken(VirtqueueError.packedSizeInvalid(num).description + " (queue \(index))", fromDataPath: false)
                    throw Refusal("packed ring size \(num) for queue \(index) is outside 1...32768")
                }
            } else {
                guard num > 0, num <= SplitVirtqueue.maxSize, num & (num - 1) == 0 else {
                    markBroken(VirtqueueError.sizeInvalid(num).description + " (queue \(index))", fromDataPath: false)
                    throw Refusal("ring size \(num) for queue \(index) is not a power of two in 1...32768")
                }
            }
            gate.whilePaused {
                for q in rings {
                    q.ringBase = q.stopRing()
                    q.configuration.size = UInt16(num)
                }
            }
            return nil
        case (.setVringAddr, .vringAddress(let a)):
            // For a packed ring: the descriptor ring, the driver's and the device's event suppression areas.
            let rings = try queue(a.index)
            // A packed ring has no used ring: it marks its writes where they lie (PackedVirtqueue+DirtyLog).
            let usedLog = packedRings ? nil : try usedRingLogAddress(of: a, queue: queues[Int(a.index)])
            gate.whilePaused {
                for q in rings {
                    q.ringBase = q.stopRing()
                    q.configuration.descAddress = FrontEndAddress(a.descUserAddr)
                    q.configuration.availAddress = FrontEndAddress(a.availUserAddr)
                    q.configuration.usedAddress = FrontEndAddress(a.usedUserAddr)
                }
                addressesSet[Int(a.index)] = true
                usedRingLogAddresses[Int(a.index)] = usedLog
                applyDirtyLog()
            }
            try startIfReady(Int(a.index))
            return nil
        case (.setVringBase, .vringState(let index, let num)):
            let rings = try queue(index)
            // A packed ring's base has a position and a wrap counter in each half (bits 15 and 31);
            // a position past the ring is refused when it starts.
            guard packedRings || num <= UInt32(UInt16.max) else {
                throw Refusal("ring base \(num) does not fit a 16-bit index")
            }
            gate.whilePaused {
                for q in rings {
                    _ = q.stopRing()
                    q.ringBase = num
                }
            }
            return nil
        case (.getVringBase, .vringState(let index, _)):
            let rings = try queue(index)
            let active = control(Int(index))
            var base: UInt32 = 0
            gate.whilePaused {
                base = active.stopRing()
                // GET_VRING_BASE stops the ring; a later start needs a new kick descriptor.
                kicks[Int(index)].close()
                for q in rings { q.kickFD = -1 }
            }
            logger.debug("vhost-user \(name): queue \(index) stopped at 0x\(String(base, radix: 16))")
            return .vringState(index: index, num: base)
        case (.setVringKick, .vringFile(let index, let hasFD)):
            let rings = try queue(index)
            let kick = kicks[Int(index)]
            let fd = try eventFD(of: m, hasFD: hasFD, role: "kick", queue: index)
            let raw = fd.rawValueOrNegative
            gate.whilePaused {
                for q in rings {
                    q.kickFD = raw
                    // Without PROTOCOL_FEATURES a ring is enabled by its kick (vhost-user.rst, "Ring states").
                    if !features.contains(.protocolFeatures) { q.enabled = true }
                }
            }
            // The old descriptor is closed only now that no worker polls it.
            kick.replace(with: fd)
            try startIfReady(Int(index))
            return nil
        case (.setVringCall, .vringFile(let index, let hasFD)):
            let rings = try queue(index)
            let call = calls[Int(index)]
            let fd = try eventFD(of: m, hasFD: hasFD, role: "call", queue: index)
            // Ferry writes a call descriptor from a worker: that write must not wait
            // on a front-end that parks the counter at its maximum (EventFD).
            do throws(SystemError) { try fd?.setNonBlocking() } catch {
                throw Refusal("call descriptor for queue \(index) cannot be made non-blocking: \(error)")
            }
            let raw = fd.rawValueOrNegative
            gate.whilePaused { for q in rings { q.callFD = raw } }
            call.replace(with: fd)
            return nil
        case (.setVringErr, .vringFile(let index, let hasFD)):
            _ = try queue(index)
            errs[Int(index)].replace(with: try eventFD(of: m, hasFD: hasFD, role: "err", queue: index))
            return nil
        case (.setVringEnable, .vringState(let index, let num)):
            let rings = try queue(index)
            guard num <= 1 else { throw Refusal("SET_VRING_ENABLE state \(num) is neither 0 nor 1") }
            gate.whilePaused {
                for q in rings {
                    q.enabled = num == 1
                    if num == 0 { q.ringBase = q.stopRing() }
                }
            }
            if num == 1 { try startIfReady(Int(index)) }
            return nil
        case (.netSetMTU, .u64(let value)):
            guard value >= 68, value <= 65535 else { throw Refusal("MTU \(value) outside 68...65535") }
            mtu = Int(value)
            logger.info("vhost-user \(name): MTU \(value)")
            return nil
        case (.setStatus, .u64(let value)):
            guard value <= 0xff else { throw Refusal("status 0x\(String(value, radix: 16)) wider than 8 bits") }
            let was = status
            status = UInt8(value)
            if value == 0 {
                // The driver reset the device: stop, and forward again once it is set up anew.
                gate.whilePaused { for q in allRings { q.ringBase = q.stopRing() } }
                if isBroken {
                    logger.info("vhost-user \(name): reset by the driver, leaving the broken state")
                    broken.withLock { $0 = nil }
                }
            } else if status & VirtioDeviceStatus.driverOK != 0 && was & VirtioDeviceStatus.driverOK == 0 {
                for i in queues.indices { try startIfReady(i) }
            }
            return nil
        case (.getStatus, _):
            return .u64(UInt64(status | (isBroken ? VirtioDeviceStatus.needsReset : 0)))
        case (.sendRARP, .u64(let value)):
            try announce(value)
            return nil
        case (.setLogBase, .dirtyLog(let size, let offset)):
            try setDirtyLog(size: size, offset: offset, message: m)
            // The reply says the log is mapped; it has no payload (vhost-user.rst, "Communication").
            return VhostUserMessage.Payload.none
        default:
            throw Refusal("payload does not fit the request")
        }
    }

    /// The descriptor a SET_VRING_KICK/CALL/ERR carries, once it is seen to be
    /// an eventfd: anything else (a pipe, a socket, a file) is refused before
    /// Ferry reads, writes or polls it. Nil for a message with the no-fd flag.
    private func eventFD(of m: VhostUserMessage, hasFD: Bool, role: String, queue index: UInt32)
        throws(Refusal) -> FileDescriptor?
    {
        guard hasFD else { return nil }
        guard let fd = m.descriptors.take(0) else { throw Refusal("\(role) descriptor for queue \(index) is missing") }
        let kind: DescriptorKind
        do { kind = try DescriptorKind.of(fd.rawValue) } catch {
            throw Refusal("\(role) descriptor for queue \(index) cannot be examined: \(error)")
        }
        guard kind == .eventfd else {
            throw Refusal("\(role) descriptor for queue \(index) is \(kind), not an eventfd")
        }
        return fd
    }

    // MARK: - Memory

    private func setMemoryTable(_ regions: [MemoryRegionInfo], message m: VhostUserMessage) throws(Refusal) {
        let newMemory: GuestMemory
        do { newMemory = try GuestMemory(regions: regions.map(Self.info), files: m.descriptors) } catch {
            throw Refusal("memory table rejected: \(error)")
        }
        try checkDirtyLog(covers: newMemory)
        replaceMemory(newMemory)
        logger.info("vhost-user \(name): memory table of \(regions.count) region(s), \(regions.reduce(0) { $0 + $1.size } >> 20) MiB")
    }

    private func addRegion(_ region: MemoryRegionInfo, message m: VhostUserMessage) throws(Refusal) {
        guard let fd = m.descriptors.take(0) else { throw Refusal("ADD_MEM_REG without a descriptor") }
        let newMemory: GuestMemory
        do {
            if let memory {
                newMemory = try memory.adding(Self.info(region), file: fd)
            } else {
                let files = ReceivedDescriptors()
                files.append(fd)
                newMemory = try GuestMemory(regions: [Self.info(region)], files: files)
            }
        } catch {
            throw Refusal("region rejected: \(error)")
        }
        try checkDirtyLog(covers: newMemory)
        replaceMemory(newMemory)
        logger.info("vhost-user \(name): memory region added at guest 0x\(String(region.guestPhysAddr, radix: 16)), \(region.size >> 20) MiB (\(newMemory.regions.count) region(s))")
    }

    private func removeRegion(_ region: MemoryRegionInfo) throws(Refusal) {
        guard let memory else { throw Refusal("REM_MEM_REG with no memory table") }
        let newMemory: GuestMemory?
        do { newMemory = try memory.removing(guestPhysicalAddress: region.guestPhysAddr, size: region.size) } catch {
            throw Refusal("\(error)")
        }
        if let newMemory { replaceMemory(newMemory) } else {
            gate.whilePaused {
                for q in allRings { q.ringBase = q.stopRing() }
                self.memory = nil
            }
        }
        logger.info("vhost-user \(name): memory region removed at guest 0x\(String(region.guestPhysAddr, radix: 16)), \(region.size >> 20) MiB (\(newMemory?.regions.count ?? 0) region(s) left)")
    }

    /// Swaps the table while the rings are stopped, and restarts the rings that
    /// ran on the new table in the same pause: a worker let go between the two
    /// would find the guest's receive rings stopped and drop what arrived for it
    /// (`not_ready`; a DIMM plugged under a ping lost one). The old mappings go
    /// once nothing refers to them. A ring the new table no longer holds breaks
    /// the device.
    private func replaceMemory(_ newMemory: GuestMemory) {
        var failures: [(queue: Int, error: VirtqueueError)] = []
        gate.whilePaused {
            let running = allRings.filter { $0.isRunning }
            for q in running { q.ringBase = q.stopRing() }
            memory = newMemory
            for q in running {
                do throws(VirtqueueError) { try q.start(memory: newMemory) } catch {
                    failures.append((q.index, error))
                }
            }
        }
        if let first = failures.first {
            markBroken("queue \(first.queue) cannot run on the new memory table: \(first.error)", fromDataPath: false)
        }
    }

    static func info(_ r: MemoryRegionInfo) -> GuestMemoryRegionInfo {
        GuestMemoryRegionInfo(guestPhysicalAddress: r.guestPhysAddr, size: r.size, frontEndAddress: r.userAddr, mmapOffset: r.mmapOffset)
    }

    // MARK: - Rings

    private func startIfReady(_ index: Int) throws(Refusal) {
        let q = control(index)
        guard !isBroken, !q.isRunning, q.enabled, q.kickFD >= 0, addressesSet[index], q.configuration.size > 0,
              let memory else { return }
        // virtio 1.2 §3.1.1: no buffer is used before DRIVER_OK. Only a front-end
        // that negotiated STATUS tells us when that is; for others, enabled means go.
        if protocolFeatures.contains(.status) && status & VirtioDeviceStatus.driverOK == 0 { return }
        var failure: VirtqueueError?
        gate.whilePaused {
            do throws(VirtqueueError) { try q.start(memory: memory) } catch { failure = error }
        }
        if let failure {
            var hint = ""
            if case .ringNotMapped = failure {
                hint = " — is the guest's memory shared with Ferry? (QEMU: memory-backend-memfd with share=on)"
            }
            markBroken("queue \(index): \(failure)\(hint)", fromDataPath: false)
            throw Refusal("queue \(index) cannot start: \(failure)")
        }
        logger.info("vhost-user \(name): queue \(index) running (\(packedRings ? "packed" : "split"), size \(q.configuration.size), from \(q.startIndex))")
        // QEMU creates kick eventfds already signalled: only kicks from now on count.
        if q.kickFD >= 0 { _ = EventFD.drain(q.kickFD) }
        watch[index] = (q.availIndexInRing ?? 0, nil)
    }

    /// Stops the device after a guest error: one log line, NEEDS_RESET in the
    /// status, every queue stopped; other ports go on. The worker calls it when a
    /// ring check fails (it owns the rings then); the control thread goes through the gate.
    public func markBroken(_ reason: String, fromDataPath: Bool) {
        // A ring whose memory shrank reads zeros and fails some check of its own;
        // the shrinking is the reason worth telling.
        let reason = memory?.damage().map { "\($0)" } ?? reason
        let first = broken.withLock { current -> Bool in
            if current != nil { return false }
            current = reason
            return true
        }
        guard first else { return }
        let stopAll = { for q in self.allRings where q.isRunning { q.ringBase = q.stopRing() } }
        if fromDataPath { stopAll() } else { gate.whilePaused(stopAll) }
        logger.error("vhost-user \(name): device broken, forwarding stopped: \(reason)")
    }

    /// Detects a front-end whose guest memory is not really shared (QEMU
    /// without share=on maps it privately): the driver kicks, but the ring we
    /// see never changes. Only RX rings are watched: a driver posts receive
    /// buffers as it starts, while an idle TX ring may be kicked (DPDK kicks
    /// every queue at start) and rightly stay empty. The grace period runs
    /// from the first kick after the ring started, so a guest that opens its
    /// interface long after the driver loaded is not misjudged. A ring that
    /// moves once is trusted from then on.
    public func checkHealth(now: Double) {
        guard !isBroken else { return }
        // A region file the front-end truncated: stop before an access faults.
        if let damage = memory?.damage() {
            markBroken("\(damage)", fromDataPath: false)
            return
        }
        for i in queues.indices where i % 2 == 0 {
            let q = control(i)
            guard let w = watch[i] else { continue }
            guard let availNow = q.availIndexInRing else { watch[i] = nil; continue }
            if availNow != w.avail || availNow != q.startIndex {
                watch[i] = nil
                continue
            }
            var kickedAt = w.kickedAt
            if kickedAt == nil && !kicks[i].isEmpty && EventFD.drain(kicks[i].rawValue) > 0 { kickedAt = now }
            watch[i] = (w.avail, kickedAt)
            if let kickedAt, now - kickedAt > Self.unsharedMemoryGrace {
                markBroken("queue \(i) is kicked but its ring never changes: the guest's memory is not shared with "
                           + "Ferry (QEMU needs share=on on its memory backend, e.g. memory-backend-memfd,share=on)",
                           fromDataPath: false)
                return
            }
        }
    }

    /// Points every ring at the log while logging is on (VHOST_F_LOG_ALL and a
    /// log), at nothing otherwise. The caller has the data path paused.
    func applyDirtyLog() {
        let log = features.contains(.logAll) ? dirtyLog : nil
        for q in allRings { q.configuration.setDirtyLog(log, usedRing: usedRingLogAddresses[q.index]) }
    }

    func usedRingLogAddress(queue index: Int) -> GuestAddress? { usedRingLogAddresses[index] }

    /// Forgets the front-end: rings, memory and descriptors (a reset or a departure).
    public func reset(reason: String) {
        gate.whilePaused {
            for q in allRings { q.reset() }
            packedRings = false
            memory = nil
            for slot in kicks + calls + errs { slot.close() }
            addressesSet = addressesSet.map { _ in false }
            watch = watch.map { _ in nil }
            usedRingLogAddresses = usedRingLogAddresses.map { _ in nil }
            dirtyLog = nil
            pendingAnnouncement.store(0, ordering: .relaxed)
            features = []
            protocolFeatures = []
            status = 0
        }
        broken.withLock { $0 = nil }
        logger.info("vhost-user \(name): reset (\(reason))")
    }
}
