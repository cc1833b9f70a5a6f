import Glibc
import Packets
import Platform
import TestSupport
import Virtio

/// The device's side of a ring fuzz, for either layout: a pull, a push and a direct receive,
/// each followed by the properties every layout must keep. Through `Virtqueue`, as the ports call it.
enum RingFuzzBursts {
    // Shared by every input: libFuzzer (and the corpus test) runs one input at a time, on one thread.
    nonisolated(unsafe) static let batch = PacketBatch(capacity: 32)
    nonisolated(unsafe) static let frames = FrameStore(capacity: 1 << 18)
    static let pieceCapacity = 64
    nonisolated(unsafe) static let pieces = UnsafeMutablePointer<iovec>.allocate(capacity: pieceCapacity)
    nonisolated(unsafe) static let prefix = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 16)

    /// Pulls a burst and gives it back; every pulled frame's segments add up to its length and
    /// are readable. Returns the chains consumed.
    @discardableResult
    static func pull(_ queue: Virtqueue, counters: QueueCounters, outcome: inout FuzzOutcome) -> Int {
        batch.reset()
        let wasRunning = queue.isRunning
        let consumed = queue.pull(into: batch, counters: counters)
        if wasRunning && !queue.isRunning { outcome.refused += 1 }
        fuzzCheck(batch.count <= consumed, "pulled \(batch.count) frames from \(consumed) chains")
        for frame in 0..<batch.count {
            var total: UInt64 = 0
            var sum: UInt8 = 0
            for segment in batch.segments(of: frame) {
                let base = batch.segmentBase(segment)
                let length = batch.segmentLength(segment)
                // Reading every byte makes a pointer outside guest memory fault here, under the sanitizer.
                for offset in 0..<length { sum &+= base.load(fromByteOffset: offset, as: UInt8.self) }
                total += UInt64(length)
            }
            fuzzCheck(total == UInt64(batch.length(of: frame)), "frame \(frame): segments hold \(total) of \(batch.length(of: frame)) bytes (\(sum))")
            fuzzCheck(batch.length(of: frame) <= 65_550, "frame \(frame) of \(batch.length(of: frame)) bytes")
        }
        queue.release()
        outcome.accepted += batch.count
        outcome.refused += consumed - batch.count
        batch.reset()
        return consumed
    }

    /// Pushes `count` frames of `length` bytes; each is sent or counted as dropped.
    static func push(_ queue: Virtqueue, count: Int, length: Int, counters: QueueCounters, outcome: inout FuzzOutcome) {
        batch.reset()
        frames.reset()
        for i in 0..<count { frames.append(ethernetFrame(length: length, seed: UInt8(i)), to: batch) }
        let before = counters.snapshot
        queue.push(from: batch, counters: counters)
        let after = counters.snapshot
        let sent = after.txPackets - before.txPackets
        let dropped = after.totalDrops - before.totalDrops
        fuzzCheck(sent + dropped == UInt64(count), "pushed \(count) frames: \(sent) sent, \(dropped) dropped")
        outcome.accepted += Int(sent)
        outcome.refused += Int(dropped)
        batch.reset()
    }

    nonisolated(unsafe) static let segmenter = SoftwareSegmenter()

    /// A TCP GSO frame of `payload` bytes for a driver that negotiated no GSO: its segments
    /// go straight into whatever chains the ring offers, each one delivered or counted.
    static func pushSegments(_ queue: Virtqueue, payload: Int, segmentSize: Int, ipv6: Bool, counters: QueueCounters,
                             outcome: inout FuzzOutcome) {
        batch.reset()
        frames.reset()
        let gso = GSOTestFrame(ipv6: ipv6, payloadLength: payload, segmentSize: segmentSize)
        var header = [UInt8](repeating: 0, count: 12)
        header.withUnsafeMutableBytes { gso.header.store(to: $0.baseAddress!) }
        frames.append(gso.bytes, header: header, to: batch)
        let before = counters.snapshot
        queue.push(from: batch, counters: counters, segmenter: segmenter, acceptance: [])
        let after = counters.snapshot
        let sent = after.txPackets - before.txPackets
        let dropped = after.totalDrops - before.totalDrops
        // A queue that was stopped, or that the ring's indexes broke before the frame was
        // reached, refuses it whole: one drop, as for any frame. A frame that was cut counts
        // each of its segments.
        let cut = after.offloads[.segmentedFrames, default: 0] - before.offloads[.segmentedFrames, default: 0]
        let segments = cut == 1 ? (payload + segmentSize - 1) / segmentSize : 1
        fuzzCheck(cut == 1 || !queue.isRunning, "a running queue did not cut the frame")
        fuzzCheck(sent + dropped == UInt64(segments), "\(segments) segments: \(sent) sent, \(dropped) dropped")
        fuzzCheck(after.offloads[.segmentsOut, default: 0] - before.offloads[.segmentsOut, default: 0] == sent,
                  "\(sent) segments sent, segments_out says otherwise")
        outcome.accepted += Int(sent)
        outcome.refused += Int(dropped)
        batch.reset()
    }

    /// A seed for either layout's `pushSegments`: chains of one, two and three buffers offered
    /// (op `offerRX`), then a TSO frame over IPv6 of 7 segments of 1448 and one over IPv4 of 20
    /// that runs out of chains (op `pushSegments`), after a `setup` byte that asks for mergeable buffers.
    static func segmentsSeed(setup: UInt8, offerRX: UInt8, pushSegments: UInt8) -> [UInt8] {
        var seed = FuzzInputBuilder()
        seed.byte(setup)
        for chain in [[2048], [700, 900], [100, 1000, 2048], [1500], [512, 512]] {
            seed.byte(offerRX)
            seed.byte(UInt8(chain.count - 1))
            for size in chain { seed.below(size - 1) }
            seed.bool(chain.count > 2)
        }
        for (payload, ipv6) in [(10_000, true), (28_000, false)] {
            seed.byte(pushSegments)
            seed.below(payload - 1)
            seed.below(1448 - 536)
            seed.bool(ipv6)
        }
        return seed.bytes
    }

    /// Lends the next RX chain as a TAP read would take it, fills it, and commits it or not.
    static func receiveDirect(_ queue: Virtqueue, want: Int, commit: Bool, outcome: inout FuzzOutcome) {
        guard let memory = queue.memoryTable else { return }
        switch queue.nextChain(into: pieces, capacity: pieceCapacity, want: want, memory: memory) {
        case .chain(let head, let count, let bytes):
            fuzzCheck(count <= pieceCapacity && bytes >= want, "a chain of \(count) pieces and \(bytes) bytes for \(want)")
            var total = 0
            for i in 0..<count {
                // Writable guest memory: the kernel would write here.
                memset(pieces[i].iov_base, 0xA5, pieces[i].iov_len)
                total += pieces[i].iov_len
            }
            fuzzCheck(total == bytes, "pieces hold \(total) bytes, the chain says \(bytes)")
            guard commit else { return }
            memset(prefix, 0, 64)
            queue.commitChain(head: head, pieces: pieces, count: count, length: want, prefix: prefix,
                              prefixLength: min(queue.headerLength, want))
            queue.publishCommitted()
            outcome.accepted += 1
        case .none, .unsuitable:
            break
        case .broken:
            outcome.refused += 1
        }
    }
}

/// Guest RAM is made once (memfd, mappings) and zeroed per input.
struct RingFuzzMachine {
    let ram: GuestRAM
    let memory: GuestMemory
}

/// One input's device and driver, for either layout.
struct RingFuzzSession<Ring: MockDriverRing, Queue: VirtqueueControl> {
    let ring: Ring
    let queue: Queue
    let memory: GuestMemory
    let counters = QueueCounters()
    /// Stopped by an operation, not by a guest's mistake.
    var stoppedOnPurpose = false
    var outcome = FuzzOutcome()

    var ram: GuestRAM { ring.ram }
}

extension RingFuzzBursts {
    static let ramSize = 0x1_0000

    // Shared by every input, as `batch` is.
    nonisolated(unsafe) static let machines: [RingFuzzMachine] =
        [try! GuestRAM.oneRegion(size: ramSize), try! GuestRAM.twoRegions(size: ramSize)].map {
            RingFuzzMachine(ram: $0, memory: try! $0.makeGuestMemory())
        }
    static let call = try! EventFD.create()

    /// A guest address the walker must check: in the buffer area, near a region's end, or anywhere.
    static func address(_ input: inout FuzzInput, _ ring: some MockDriverRing) -> UInt64 {
        let ram = ring.ram
        switch input.byte() % 3 {
        case 0: return ring.buffers.lowerBound + UInt64(input.below(Int(ring.buffers.count)))
        case 1:
            let region = ram.regions[input.below(ram.regions.count)]
            return region.guestPhysicalAddress + region.size - UInt64(input.byte())
        default: return input.address(near: ram.base)
        }
    }

    static func length(_ input: inout FuzzInput) -> UInt32 {
        switch input.byte() % 3 {
        case 0: return UInt32(input.byte())
        case 1: return UInt32(input.uint16())
        default: return input.uint32()
        }
    }

    /// Mostly NEXT, WRITE and INDIRECT (the same bits in both layouts); sometimes any bits at all.
    static func flags(_ input: inout FuzzInput) -> UInt16 {
        let value = input.byte()
        return value & 0x80 == 0 ? UInt16(value & 7) : input.uint16()
    }

    /// A few bytes of anything anywhere in guest RAM: rings, tables and buffers alike.
    static func scribble(_ input: inout FuzzInput, _ ram: GuestRAM) {
        let at = ram.base + UInt64(input.below(ramSize - 16))
        ram.write(Array(input.take(Int(input.byte() % 16) + 1)), at: at)
    }

    /// One input of a ring target: its setup byte picks the machine (bit 0) and, through `open`,
    /// the driver's ring; the queue is started, then each operation runs through `step`, after
    /// which the queue must be running, stopped on purpose, or stopped with an error saying why.
    static func run<Ring, Queue>(_ bytes: UnsafeRawBufferPointer,
                                 open: (_ setup: UInt8, GuestRAM) -> (Ring, Queue),
                                 step: (inout FuzzInput, inout RingFuzzSession<Ring, Queue>) -> Void) -> FuzzOutcome {
        var input = FuzzInput(bytes)
        let setup = input.byte()
        let machine = machines[Int(setup & 1)]
        memset(machine.ram.shared.base, 0, ramSize)
        let (ring, queue) = open(setup, machine.ram)
        var session = RingFuzzSession(ring: ring, queue: queue, memory: machine.memory)
        session.queue.callFD = call.rawValue
        do { try session.queue.start(memory: machine.memory) } catch { fuzzCheck(false, "the mock's ring does not start: \(error)") }
        while !input.isExhausted {
            step(&input, &session)
            let queue = session.queue
            fuzzCheck(queue.isRunning || session.stoppedOnPurpose || queue.error != nil, "the queue stopped without an error")
        }
        _ = EventFD.drain(call.rawValue)
        return session.outcome
    }
}
