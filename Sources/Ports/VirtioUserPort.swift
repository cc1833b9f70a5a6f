import Glibc
import Logging
import Packets
import Platform
import Synchronization
import VhostUser
import Virtio

/// Ferry as a guest's driver: a virtio-net device whose back-end is someone else's
/// vhost-user socket (another Ferry, DPDK's net_vhost, any vhost-user switch), the way
/// DPDK's virtio-user port is. So a switch can be tested from outside as it sits between
/// two guests: `ferry lab` drives two of these into the device under test.
///
/// Ferry owns the memory (one memfd, mapped once, handed over as the one region) and both
/// rings of one queue pair, split layout: queue 0 the back-end writes (frames to Ferry),
/// queue 1 it reads (frames from Ferry). Each descriptor is one buffer of `bufferLength`
/// bytes, descriptor *i* always buffer *i*, so nothing the back-end writes into the ring is
/// needed to find a buffer again. Every receive buffer is posted while no back-end runs;
/// a pulled frame is handed on by reference and its buffer posted again at `release`. A
/// frame pushed is copied once into a free transmit buffer behind a zero virtio-net header
/// (no offloads are negotiated: partial checksums are finished while copying); its
/// descriptor is free again when the back-end has used it. Kicks only when the back-end
/// asks (VIRTQ_USED_F_NO_NOTIFY clear); the back-end is asked never to interrupt: the
/// port is polled. A back-end that writes a used entry Ferry did not hand over, a length
/// past the buffer or an index that jumps breaks the port (one log line, every frame for
/// it `device_broken`) until it connects again.
public final class VirtioUserPort: @unchecked Sendable {
    /// One buffer: the 12-byte virtio-net header and a frame of up to 2,036 bytes.
    public static let bufferLength = 2048
    static let headerLength = 12
    /// The longest frame either way: a buffer less the header (an 802.1Q frame may use all of it).
    public static let maxFrameLength = bufferLength - headerLength

    public let counters: [QueueCounters]
    public let queueSize: UInt16
    /// The back-end's rings: 0 receives (the back-end writes), 1 transmits.
    let receiveRing: DriverSplitRing
    let transmitRing: DriverSplitRing
    let memory: SharedMemory
    let receiveBuffers: UnsafeMutableRawPointer
    let transmitBuffers: UnsafeMutableRawPointer
    /// The guest-physical address of the memory's first byte: the region is described at
    /// the address Ferry maps it (as DPDK's virtio-user does), so translation is the identity.
    let baseAddress: UInt64
    /// Eventfds per ring: kicks Ferry writes when the back-end asks; calls it never waits on.
    let receiveKick: FileDescriptor
    let transmitKick: FileDescriptor
    let receiveCall: FileDescriptor
    let transmitCall: FileDescriptor
    let gate: DataPathGate
    let name: String
    let logger: Logger
    public private(set) var frontEnd: VhostUserFrontEnd!
    private var loggedBroken = false

    /// Set by the control thread while workers are paused.
    var isRunning = false
    /// Receive descriptors taken by the last pulls, posted again at `release`.
    let reposts: UnsafeMutablePointer<UInt16>
    var repostCount = 0
    /// Transmit descriptors Ferry holds (a stack).
    let freeTransmit: UnsafeMutablePointer<UInt16>
    var freeTransmitCount = 0
    private let broken = Mutex<DriverRingError?>(nil)
    /// The worker's view of `broken`, so the data path takes the lock once.
    var isBroken = false

    /// A port on the back-end socket at `path`, which it connects to (`server`: listens on).
    public init(path: String, server: Bool, queueSize: UInt16, name: String, gate: DataPathGate,
                logger: Logger, replyTimeout: Double = 5) throws {
        self.queueSize = queueSize
        self.gate = gate
        self.name = name
        self.logger = logger
        counters = [QueueCounters()]
        let layout = DriverSplitRing.Layout(size: queueSize)
        let ringBytes = (layout.byteCount + 4095) & ~4095
        let bufferBytes = Int(queueSize) * Self.bufferLength
        let length = 2 * ringBytes + 2 * bufferBytes
        memory = try SharedMemory(length: length, name: "ferry-virtio-user")
        // SAFETY: the mapping is `length` bytes: two page-rounded rings, then two buffer areas.
        let base = memory.base
        base.initializeMemory(as: UInt8.self, repeating: 0, count: length)  // every page resident from the start
        baseAddress = UInt64(UInt(bitPattern: base))
        receiveRing = DriverSplitRing(at: base, layout: layout)
        transmitRing = DriverSplitRing(at: base + ringBytes, layout: layout)
        receiveBuffers = base + 2 * ringBytes
        transmitBuffers = receiveBuffers + bufferBytes
        receiveKick = try EventFD.create()
        transmitKick = try EventFD.create()
        receiveCall = try EventFD.create()
        transmitCall = try EventFD.create()
        reposts = .allocate(capacity: Int(queueSize))
        reposts.initialize(repeating: 0, count: Int(queueSize))
        freeTransmit = .allocate(capacity: Int(queueSize))
        freeTransmit.initialize(repeating: 0, count: Int(queueSize))
        prepareRings()

        func ring(_ index: UInt32, at offset: Int, kick: Int32, call: Int32) -> FrontEndSetup.Ring {
            let at = baseAddress + UInt64(offset)
            return FrontEndSetup.Ring(index: index, size: queueSize, descAddress: at + UInt64(layout.descriptorOffset),
                                      availAddress: at + UInt64(layout.availOffset),
                                      usedAddress: at + UInt64(layout.usedOffset),
                                      kickFD: kick, callFD: call)
        }
        let setup = FrontEndSetup(
            region: MemoryRegionInfo(guestPhysAddr: baseAddress, size: UInt64(length), userAddr: baseAddress,
                                     mmapOffset: 0),
            memoryFD: memory.fd.rawValue,
            rings: [ring(0, at: 0, kick: receiveKick.rawValue, call: receiveCall.rawValue),
                    ring(1, at: ringBytes, kick: transmitKick.rawValue, call: transmitCall.rawValue)],
            features: [.version1])
        frontEnd = try VhostUserFrontEnd(
            path: path, mode: server ? .server : .client, name: name, setup: setup, logger: logger,
            replyTimeout: replyTimeout,
            started: { [unowned self] _ in self.gate.whilePaused { self.isRunning = true } },
            stopped: { [unowned self] in self.stop() })
    }

    deinit {
        reposts.deallocate()
        freeTransmit.deallocate()
    }

    public var queueCount: Int { 1 }

    /// Empty rings, every receive buffer posted, every transmit buffer free: how a back-end
    /// must find them when it connects.
    // SAFETY: ids run below queueSize, the capacity of `freeTransmit`.
    private func prepareRings() {
        receiveRing.reset()
        transmitRing.reset()
        for id in 0..<queueSize {
            receiveRing.offer(id, address: address(of: receiveBuffer(id)), length: UInt32(Self.bufferLength), deviceWritable: true)
            freeTransmit[Int(id)] = id
        }
        receiveRing.publish()
        freeTransmitCount = Int(queueSize)
        repostCount = 0
    }

    /// The back-end went away: the rings stop and are made new for the next one.
    private func stop() {
        gate.whilePaused {
            isRunning = false
            isBroken = false
            prepareRings()
        }
        broken.withLock { $0 = nil }
        loggedBroken = false
    }

    // SAFETY: callers pass descriptor ids, below queueSize: the area holds queueSize buffers.
    func receiveBuffer(_ id: UInt16) -> UnsafeMutableRawPointer { receiveBuffers + Int(id) &* Self.bufferLength }

    // SAFETY: callers pass descriptor ids, below queueSize: the area holds queueSize buffers.
    func transmitBuffer(_ id: UInt16) -> UnsafeMutableRawPointer { transmitBuffers + Int(id) &* Self.bufferLength }

    func address(of buffer: UnsafeMutableRawPointer) -> UInt64 { UInt64(UInt(bitPattern: buffer)) }

    /// Stops the data path on the back-end's first lie; the control thread logs it.
    func markBroken(_ error: DriverRingError) {
        isBroken = true
        broken.withLock { $0 = $0 ?? error }
    }

    /// Why the port is broken, if it is.
    public var brokenReason: DriverRingError? { broken.withLock { $0 } }

    // MARK: The data path

    // SAFETY: at most queueSize - repostCount entries are taken (`room`), so `reposts` (queueSize
    // entries) never overflows; the ring hands over only ids below queueSize that it held; the
    // batch header written is the next frame's, below the batch's room.
    public func pull(queue: Int, into batch: PacketBatch) -> Int {
        guard isRunning, !isBroken else { return 0 }
        let room = min(batch.room, batch.freeSegments, Int(queueSize) &- repostCount)
        var frames = 0
        var bytes: UInt64 = 0
        let taken = receiveRing.takeUsed(atMost: room, bufferLength: UInt32(Self.bufferLength)) { id, length in
            reposts[repostCount] = id
            repostCount &+= 1
            let frameLength = Int(length) &- Self.headerLength
            guard frameLength >= Ethernet.headerSize else {
                counters[0].dropped(.runt)
                return
            }
            // No offloads were negotiated: nothing in the back-end's header means anything.
            batch.header(batch.count).initializeMemory(as: UInt8.self, repeating: 0, count: PacketBatch.headerSize)
            batch.append(base: receiveBuffer(id) + Self.headerLength, length: UInt32(frameLength), token: UInt32(id))
            frames &+= 1
            bytes &+= UInt64(frameLength)
        }
        if let error = receiveRing.error { markBroken(error) }
        if frames > 0 { counters[0].received(packets: frames, bytes: bytes) }
        return taken
    }

    /// Posts again the receive buffers of the frames pulled, now copied on.
    // SAFETY: i < repostCount <= queueSize, the capacity of `reposts`.
    public func release(queue: Int) {
        guard repostCount > 0 else { return }
        var i = 0
        while i < repostCount {
            let id = reposts[i]
            receiveRing.offer(id, address: address(of: receiveBuffer(id)), length: UInt32(Self.bufferLength),
                              deviceWritable: true)
            i &+= 1
        }
        repostCount = 0
        guard isRunning else { return }
        receiveRing.publish()
        if receiveRing.deviceWantsKick { EventFD.signal(receiveKick.rawValue) }
    }

    // SAFETY: `freeTransmit` is read below freeTransmitCount > 0 (checked), ids in it are below
    // queueSize; the header is zeroed in the buffer of that id, 2 KiB long.
    public func push(queue: Int, from batch: PacketBatch) {
        let n = batch.count
        guard n > 0 else { return }
        guard isRunning, !isBroken else {
            counters[0].dropped(isBroken ? .deviceBroken : .notReady, n)
            return
        }
        reclaimTransmitted()
        guard !isBroken else {
            counters[0].dropped(.deviceBroken, n)
            return
        }
        var sent = 0
        var bytes: UInt64 = 0
        var i = 0
        while i < n {
            guard freeTransmitCount > 0 else {
                counters[0].dropped(.txFull, n &- i)
                break
            }
            let id = freeTransmit[freeTransmitCount &- 1]
            let buffer = transmitBuffer(id)
            if let why = batch.gather(i, into: buffer + Self.headerLength, limit: Self.maxFrameLength,
                                      untaggedLimit: Self.maxFrameLength &- Ethernet.tagSize) {
                counters[0].dropped(why)
                i &+= 1
                continue
            }
            buffer.initializeMemory(as: UInt8.self, repeating: 0, count: Self.headerLength)
            freeTransmitCount &-= 1
            let length = batch.length(of: i)
            transmitRing.offer(id, address: address(of: buffer), length: UInt32(Self.headerLength &+ length),
                               deviceWritable: false)
            sent &+= 1
            bytes &+= UInt64(length)
            i &+= 1
        }
        guard sent > 0 else { return }
        transmitRing.publish()
        if transmitRing.deviceWantsKick { EventFD.signal(transmitKick.rawValue) }
        counters[0].sent(packets: sent, bytes: bytes)
    }

    /// Takes back the transmit descriptors the back-end has used.
    // SAFETY: the ring hands back only ids it held, at most queueSize in all, so freeTransmitCount
    // stays below the capacity of `freeTransmit` (queueSize) while one is added.
    func reclaimTransmitted() {
        // A transmit buffer's used length means nothing (the device wrote nothing into it).
        _ = transmitRing.takeUsed(atMost: Int(queueSize), bufferLength: .max) { id, _ in
            freeTransmit[freeTransmitCount] = id
            freeTransmitCount &+= 1
        }
        if let error = transmitRing.error { markBroken(error) }
    }

    /// Free transmit buffers, with those the back-end has used and not yet given back.
    public func room(atMost limit: Int) -> Int {
        guard isRunning, !isBroken else { return 0 }
        return min(limit, freeTransmitCount &+ transmitRing.usedWaiting)
    }

    /// What `ferry ctl show ports` says of it.
    public var state: String {
        if let why = brokenReason { return "broken: back-end \(why)" }
        if isRunning { return "running" }
        let waiting = frontEnd.isConnected ? "negotiating" : (frontEnd.mode == .server ? "listening" : "connecting")
        return frontEnd.lastFailure.map { "\(waiting) (last: \($0))" } ?? waiting
    }
}

// The control thread serves the front-end's connection, and says once why the data path broke the port.
extension VirtioUserPort: ControlLoopClient {
    public var pollDescriptors: [Int32] { frontEnd.pollDescriptors }
    public func timeout(now: Double) -> Double? { frontEnd.timeout(now: now) }

    public func service(now: Double) {
        frontEnd.service(now: now)
        if !loggedBroken, let why = brokenReason {
            loggedBroken = true
            logger.error("virtio-user \(name): the back-end \(why); the port is broken until the back-end connects again")
        }
    }
}
