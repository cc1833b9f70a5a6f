import Glibc
import Packets
import Platform
import TestSupport
import Virtio

/// The packed ring (pull for TX, push and direct receive for RX) against a driver that writes
/// anything: `MockPackedRing` on memfd guest memory, told by the input which descriptors, flags
/// (wrap bits included), ids, indirect tables and event suppression values to write between the
/// device's bursts.
///
/// Input: a setup byte (bit 0 two regions, bit 1 mergeable buffers, bit 2 EVENT_IDX, bits 3-7 the
/// ring size, 1 to 32), then operations [op] [operands].
///
/// Checked: the queue stops only with an error saying why; every pulled frame's segments add up to
/// its length and lie in readable memory; push accounts for every frame (sent or dropped), and
/// for every segment of a GSO frame cut straight into the chains; and nothing traps or touches
/// memory it should not.
public enum PackedRingFuzz {
    public static let target = FuzzTarget(name: "packed-ring", run: { run($0) }, seeds: { seeds() })

    typealias Session = RingFuzzSession<MockPackedRing, PackedVirtqueue>

    public static func run(_ bytes: UnsafeRawBufferPointer) -> FuzzOutcome {
        RingFuzzBursts.run(bytes, open: { setup, ram in
            let ring = MockPackedRing(ram: ram, size: UInt16(setup >> 3) + 1)
            let queue = PackedVirtqueue(index: 0)
            ring.configure(queue, eventIndex: setup & 4 != 0, mergeableBuffers: setup & 2 != 0)
            return (ring, queue)
        }, step: step)
    }

    static func step(_ input: inout FuzzInput, _ session: inout Session) {
        let ring = session.ring
        switch input.byte() % 12 {
        case 0:
            ring.writeDescriptor(UInt16(input.below(Int(ring.size))), address: RingFuzzBursts.address(&input, ring),
                                 length: RingFuzzBursts.length(&input), id: input.uint16(), flags: RingFuzzBursts.flags(&input))
        case 1:
            // A head's flags last, marked for this lap or the other one.
            ring.setFlags(UInt16(input.below(Int(ring.size))), RingFuzzBursts.flags(&input) | PackedFlag.available(wrap: input.bool()))
        case 2:
            // A descriptor anywhere in the buffer area: an indirect table's entry.
            let area = ring.buffers
            let at = area.lowerBound + UInt64(input.below(Int(area.count) - 16)) & ~15
            ring.writeDescriptor(atGPA: at, address: RingFuzzBursts.address(&input, ring), length: RingFuzzBursts.length(&input),
                                 id: input.uint16(), flags: RingFuzzBursts.flags(&input))
        case 3: RingFuzzBursts.pull(.packed(session.queue), counters: session.counters, outcome: &session.outcome)
        case 4:
            RingFuzzBursts.push(.packed(session.queue), count: Int(input.byte() % 4) + 1, length: 14 + input.below(9000),
                                counters: session.counters, outcome: &session.outcome)
        case 5:
            RingFuzzBursts.receiveDirect(.packed(session.queue), want: input.below(4096) + 1, commit: input.bool(),
                                         outcome: &session.outcome)
        case 6:
            let frame = ethernetFrame(length: 14 + input.below(1500), seed: input.byte())
            let cut = input.below(frame.count + 12)
            let pieces = cut == 0 ? 1 : 2
            // A chain longer than the ring would be the mock's bug, not the device's: it goes indirect.
            let indirect = input.bool() || pieces > Int(ring.size)
            makeRoom(ring, indirect ? 1 : pieces)
            ring.offerTX(frame: frame, split: cut == 0 ? nil : [cut, frame.count + 12 - cut], indirect: indirect)
        case 7:
            let sizes = (0...Int(input.byte() % 3)).map { _ in input.below(2048) + 1 }
            let indirect = input.bool() || sizes.count > Int(ring.size)
            makeRoom(ring, indirect ? 1 : sizes.count)
            ring.offerRX(bufferSizes: sizes, indirect: indirect)
        case 8:
            let queue = session.queue
            queue.stop()
            if input.bool() { queue.baseIndex = input.uint32() }
            session.stoppedOnPurpose = (try? queue.start(memory: session.memory)) == nil
        case 9:
            ring.driverEventOffWrap = input.uint16()
            ring.driverEventFlags = input.uint16()
        case 10:
            RingFuzzBursts.pushSegments(.packed(session.queue), payload: input.below(30_000) + 1,
                                        segmentSize: 536 + input.below(1500), ipv6: input.bool(),
                                        counters: session.counters, outcome: &session.outcome)
        default: RingFuzzBursts.scribble(&input, session.ram)
        }
    }

    /// The mock driver waits for used descriptors before it reuses slots; this one does not.
    static func makeRoom(_ ring: MockPackedRing, _ descriptors: Int) {
        if ring.outstanding + descriptors > Int(ring.size) { ring.forgetOutstanding() }
    }

    // MARK: - Seeds

    static func seeds() -> [(name: String, bytes: [UInt8])] {
        // Ring of 5 (4 << 3), one region, mergeable buffers: frames in, round the ring twice.
        var tx = FuzzInputBuilder()
        tx.byte(0x22)
        for round in 0..<4 {
            for (cut, indirect) in [(0, false), (30, false), (100, true)] {
                tx.byte(6)
                tx.below(200 + round)
                tx.byte(0x11)
                tx.below(cut)
                tx.bool(indirect)
            }
            tx.byte(3)
        }
        var rx = FuzzInputBuilder()
        rx.byte(0x26)
        for round in 0..<3 {
            for chain in [[2048], [1024, 1024]] {
                rx.byte(7)
                rx.byte(UInt8(chain.count - 1))
                for size in chain { rx.below(size - 1) }
                rx.bool(chain.count > 1)
            }
            rx.byte(4)
            rx.byte(1)
            rx.below(1500 + round)
        }
        rx.byte(7)
        rx.byte(0)
        rx.below(2047)
        rx.bool(false)
        rx.byte(5)
        rx.below(1513)
        rx.bool(true)
        // Four descriptors that all say NEXT on a ring of 4, all available: the walk must stop the queue.
        var loop = FuzzInputBuilder()
        loop.byte(0x18)
        for position in 0..<4 {
            loop.byte(0)
            loop.below(position)
            loop.byte(0)
            loop.below(0)
            loop.byte(0)
            loop.byte(64)
            loop.uint16(0)
            loop.byte(0x80)
            loop.uint16(DescriptorFlag.next | PackedFlag.avail)
        }
        loop.byte(3)
        // Ring of 16 (15 << 3), mergeable buffers.
        let segments = RingFuzzBursts.segmentsSeed(setup: 0x7E, offerRX: 7, pushSegments: 10)
        return [("tx-chains", tx.bytes), ("rx-chains", rx.bytes), ("ring-loop", loop.bytes),
                ("rx-segments", segments)]
    }
}
