import Glibc
import Packets
import Platform
import TestSupport
import Virtio

/// The split ring walker (pull for TX, push and direct receive for RX) against a driver that
/// writes anything: the mock driver in TestSupport on memfd guest memory, told by the input which
/// descriptors, avail entries and indexes to write between the device's bursts.
///
/// Input: a setup byte (bit 0 two regions, bit 1 mergeable buffers, bit 2 EVENT_IDX, bit 3 the
/// legacy 10-byte header, bits 4-7 the ring size's power of two), then operations [op] [operands].
///
/// Checked: the queue stops only with an error saying why; every pulled frame's segments add up to
/// its length and lie in readable memory; a pull moves the device's used index by exactly the
/// chains it consumed; push accounts for every frame (sent or dropped), and for every segment of
/// a GSO frame cut straight into the chains; and nothing traps or touches memory it should not.
public enum SplitRingFuzz {
    public static let target = FuzzTarget(name: "split-ring", run: { run($0) }, seeds: { seeds() })

    typealias Session = RingFuzzSession<MockSplitRing, SplitVirtqueue>

    public static func run(_ bytes: UnsafeRawBufferPointer) -> FuzzOutcome {
        RingFuzzBursts.run(bytes, open: { setup, ram in
            let ring = MockSplitRing(ram: ram, size: UInt16(1) << ((setup >> 4) % 9))
            let queue = SplitVirtqueue(index: 0)
            ring.configure(queue, eventIndex: setup & 4 != 0, headerLength: setup & 8 != 0 ? 10 : 12,
                           mergeableBuffers: setup & 2 != 0)
            return (ring, queue)
        }, step: step)
    }

    static func step(_ input: inout FuzzInput, _ session: inout Session) {
        let ring = session.ring
        switch input.byte() % 13 {
        case 0:
            ring.writeDescriptor(UInt16(input.below(Int(ring.size))), address: RingFuzzBursts.address(&input, ring), length: RingFuzzBursts.length(&input),
                                 flags: RingFuzzBursts.flags(&input), next: input.uint16())
        case 1: ring.makeAvailable(input.uint16())
        case 2: ring.availIndex &+= UInt16(input.byte())
        case 3:
            // A descriptor anywhere in the buffer area: an indirect table's entry.
            let area = ring.buffers
            let at = area.lowerBound + UInt64(input.below(Int(area.count) - 16)) & ~15
            ring.writeDescriptor(atGPA: at, address: RingFuzzBursts.address(&input, ring), length: RingFuzzBursts.length(&input), flags: RingFuzzBursts.flags(&input),
                                 next: input.uint16())
        case 4: pull(&session)
        case 5:
            RingFuzzBursts.push(.split(session.queue), count: Int(input.byte() % 4) + 1, length: 14 + input.below(9000),
                                counters: session.counters, outcome: &session.outcome)
        case 6:
            RingFuzzBursts.receiveDirect(.split(session.queue), want: input.below(4096) + 1, commit: input.bool(),
                                         outcome: &session.outcome)
        case 7:
            let frame = ethernetFrame(length: 14 + input.below(1500), seed: input.byte())
            let cut = input.below(frame.count + 12)
            ring.offerTX(frame: frame, split: cut == 0 ? nil : [cut, frame.count + 12 - cut], indirect: input.bool())
        case 8:
            let sizes = (0...Int(input.byte() % 3)).map { _ in input.below(2048) + 1 }
            ring.offerRX(bufferSizes: sizes, indirect: input.bool())
        case 9:
            let queue = session.queue
            queue.stop()
            if input.bool() { queue.baseIndex = RingIndex(input.uint16()) }
            session.stoppedOnPurpose = (try? queue.start(memory: session.memory)) == nil
        case 10:
            ring.usedEvent = input.uint16()
            ring.availFlags = input.uint16()
        case 11:
            RingFuzzBursts.pushSegments(.split(session.queue), payload: input.below(30_000) + 1,
                                        segmentSize: 536 + input.below(1500), ipv6: input.bool(),
                                        counters: session.counters, outcome: &session.outcome)
        default: RingFuzzBursts.scribble(&input, session.ram)
        }
    }

    static func pull(_ session: inout Session) {
        let usedBefore = session.queue.usedIndex
        let consumed = RingFuzzBursts.pull(.split(session.queue), counters: session.counters, outcome: &session.outcome)
        // The guest may scribble over the used ring itself (it is guest memory), so the device's
        // own index is what is checked: it moves by exactly the chains it consumed.
        if session.queue.isRunning {
            fuzzCheck(session.queue.usedIndex == usedBefore &+ UInt16(consumed),
                      "used index moved from \(usedBefore) to \(session.queue.usedIndex) for \(consumed) chains")
        }
    }

    // MARK: - Seeds

    static func seeds() -> [(name: String, bytes: [UInt8])] {
        // Ring of 16 (4 << 4), one region, mergeable buffers.
        var tx = FuzzInputBuilder()
        tx.byte(0x42)
        for (cut, indirect) in [(0, false), (30, false), (100, true)] {
            tx.byte(7)
            tx.below(200)
            tx.byte(0x11)
            tx.below(cut)
            tx.bool(indirect)
        }
        tx.byte(4)
        var rx = FuzzInputBuilder()
        rx.byte(0x46)
        for chain in [[2048], [1024, 1024]] {
            rx.byte(8)
            rx.byte(UInt8(chain.count - 1))
            for size in chain { rx.below(size - 1) }
            rx.bool(chain.count > 1)
        }
        rx.byte(5)
        rx.byte(1)
        rx.below(1500)
        rx.byte(8)
        rx.byte(0)
        rx.below(2047)
        rx.bool(false)
        rx.byte(6)
        rx.below(1513)
        rx.bool(true)
        // A descriptor that chains to itself, made available: the walker must stop the queue.
        var loop = FuzzInputBuilder()
        loop.byte(0x31)
        loop.byte(0)
        loop.below(0)
        loop.byte(0)
        loop.below(0)
        loop.byte(0)
        loop.byte(64)
        loop.byte(1)
        loop.uint16(0)
        loop.byte(1)
        loop.uint16(0)
        loop.byte(4)
        // Ring of 16, mergeable buffers.
        let segments = RingFuzzBursts.segmentsSeed(setup: 0x46, offerRX: 8, pushSegments: 11)
        return [("tx-chains", tx.bytes), ("rx-chains", rx.bytes), ("self-loop", loop.bytes),
                ("rx-segments", segments)]
    }
}
