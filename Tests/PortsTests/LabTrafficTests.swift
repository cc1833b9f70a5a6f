import Model
import Packets
import XCTest

@testable import Ports

/// The generator's options, frames and stamps, and the analyser's accounting of them.
final class GeneratorSpecTests: XCTestCase {
    func testNewOptionsParse() throws {
        let spec = try PortSpec(parsing: "gen:dst=02:00:00:00:00:09,size=64/570/1518,rate=1.5Mpps,burst=16,flows=8,tag=10,trunk=10,stamp=on,full=wait")
        guard case .gen(let g) = spec.kind else { return XCTFail() }
        XCTAssertEqual(g.sizes, .list([64, 570, 1518]))
        XCTAssertEqual(g.rate, .framesPerSecond(1_500_000))
        XCTAssertEqual(g.burst, 16)
        XCTAssertEqual(g.flows, 8)
        XCTAssertEqual(g.tag, 10)
        XCTAssertTrue(g.stamped)
        XCTAssertTrue(g.waitsWhenFull)
        XCTAssertEqual(PortSpec.rate("10Gbps"), .bitsPerSecond(10e9))
        XCTAssertEqual(PortSpec.rate("250kbit/s"), .bitsPerSecond(250e3))
        XCTAssertEqual(PortSpec.rate("1000pps"), .framesPerSecond(1000))
        XCTAssertEqual(PortSpec.rate("unlimited"), .unlimited)
        guard case .gen(let imix) = try PortSpec(parsing: "gen:size=imix,rate=1Gbps,stamp=off").kind else { return XCTFail() }
        XCTAssertEqual(imix.sizes.pattern.filter { $0 == 64 }.count, 7)
        XCTAssertEqual(imix.sizes.pattern.filter { $0 == 570 }.count, 4)
        XCTAssertEqual(imix.sizes.pattern.filter { $0 == 1518 }.count, 1)
        XCTAssertFalse(imix.stamped)
        // 1 Gbit/s of frames averaging 357.33 bytes.
        let meanSize: Double = (7 * 64 + 4 * 570 + 1518) / 12
        XCTAssertEqual(imix.framesPerSecond!, 1e9 / (8 * meanSize), accuracy: 0.01)
    }

    func testBadOptionsSayWhatIsWrong() {
        let cases: [(String, String)] = [
            ("gen:rate=fast", "rate must be unlimited or a number with pps or bps"),
            ("gen:rate=-1pps", "rate must be"),
            ("gen:rate=2Gpps", "rate must be"),
            ("gen:burst=0", "burst must be 1...4096"),
            ("gen:flows=5000", "flows must be 1...4096"),
            ("gen:tag=4095", "tag must be a VLAN id"),
            ("gen:stamp=maybe", "stamp must be on or off"),
            ("gen:full=block", "full must be drop or wait"),
            ("gen:size=64/x", "size must be 60...9000, a list of them"),
            ("gen:size=60,tag=5", "size 60 is too small for a tagged, stamped frame (at least 62)"),
            ("gen:size=imix,flows=4096,size=64", "given twice"),
            ("gen:src=02:00:00:00:00:01,dst=02:00:00:00:03:01,flows=4", "dst 02:00:00:00:03:01 is the source of one of the flows"),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try PortSpec(parsing: text), text) { error in
                XCTAssertTrue("\(error)".contains(message), "\(text): \(error)")
            }
        }
        XCTAssertNoThrow(try PortSpec(parsing: "gen:size=60,tag=5,stamp=off"))
    }
}

final class GeneratorFrameTests: XCTestCase {
    func bytes(_ batch: PacketBatch, _ frame: Int) -> [UInt8] {
        [UInt8](UnsafeRawBufferPointer(start: batch.segmentBase(batch.segments(of: frame).lowerBound),
                                       count: batch.length(of: frame)))
    }

    func testFramesCarryFlowsSizesAndSequences() throws {
        let spec = GeneratorSpec(sizes: .imix, count: 48, flows: 2, tag: 7)
        let gen = GenPort(spec, batchCapacity: 32)
        let batch = PacketBatch(capacity: 32)
        XCTAssertEqual(gen.pull(queue: 0, into: batch), 32)
        var sequences: [Int: UInt32] = [:]
        for i in 0..<32 {
            let f = bytes(batch, i)
            XCTAssertEqual(f.count, GeneratorSpec.Sizes.imixPattern[(i / 2) % 12], "frame \(i)")
            XCTAssertEqual(Array(f[12..<16]), [0x81, 0x00, 0x00, 0x07])
            let flow = i % 2
            XCTAssertEqual(Array(f[10..<12]), [UInt8(flow), 1], "source MAC + flow × 256")
            XCTAssertEqual(Array(f[30..<34]), [198, 18, 0, UInt8(1 + flow)])
            XCTAssertEqual(Array(f[34..<38]), [198, 19, 0, UInt8(1 + flow)])
            // The IPv4 header checksums to zero when it is right (RFC 1071).
            var sum: UInt32 = 0
            for j in stride(from: 18, to: 38, by: 2) { sum += UInt32(f[j]) << 8 | UInt32(f[j + 1]) }
            while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
            XCTAssertEqual(sum, 0xffff)
            let stamp = try XCTUnwrap(f.withUnsafeBytes { TrafficAnalyser.stamp(in: $0) })
            XCTAssertEqual(Int(stamp.flow), flow)
            XCTAssertEqual(stamp.sequence, sequences[flow, default: 0])
            sequences[flow] = stamp.sequence + 1
            XCTAssertGreaterThan(stamp.time, 0)
        }
        batch.reset()
        XCTAssertEqual(gen.pull(queue: 0, into: batch), 16)
        XCTAssertTrue(gen.isFinished)
    }

    func testTrialsSendTheirCountThenStop() {
        let gen = GenPort(GeneratorSpec(count: 0), batchCapacity: 64)
        let batch = PacketBatch(capacity: 64)
        gen.startTrial(framesPerSecond: nil, count: 100)
        var total = 0
        for _ in 0..<5 {
            batch.reset()
            total += gen.pull(queue: 0, into: batch)
        }
        XCTAssertEqual(total, 100)
        XCTAssertTrue(gen.isFinished)
        gen.startTrial(framesPerSecond: 0, count: 100)
        batch.reset()
        XCTAssertEqual(gen.pull(queue: 0, into: batch), 0, "rate 0 sends nothing")
        gen.startTrial(framesPerSecond: nil, count: 10)
        XCTAssertFalse(gen.isFinished, "a trial asked for is running before the worker takes it up")
        XCTAssertEqual(gen.stopAt.load(ordering: .relaxed), 100,
                       "the request leaves the stop to the worker: a pull racing it cannot send past the old one")
        batch.reset()
        XCTAssertEqual(gen.pull(queue: 0, into: batch), 10)
        XCTAssertEqual(gen.sent, 110)
    }

    func testARatedGeneratorSendsWholeBurstsAndDoesNotWaitForRoom() {
        let gen = GenPort(GeneratorSpec(count: 10, rate: .framesPerSecond(1e9), burst: 4))
        XCTAssertTrue(gen.asksForRoom, "until its destinations are ready")
        XCTAssertEqual(gen.allowance(destinationRoom: 64), .max, "not held back by a full destination")
        XCTAssertFalse(gen.asksForRoom)
        let batch = PacketBatch(capacity: 64)
        var pulls: [Int] = []
        while !gen.isFinished {
            batch.reset()
            let n = gen.pull(queue: 0, into: batch)
            if n > 0 { pulls.append(n) }
        }
        XCTAssertEqual(pulls.reduce(0, +), 10)
        XCTAssertTrue(pulls.dropLast().allSatisfy { $0 % 4 == 0 }, "whole bursts but for the last: \(pulls)")
    }

    func testARatedGeneratorStartsOnceEveryDestinationHasRoom() {
        let gen = GenPort(GeneratorSpec(rate: .framesPerSecond(1e6), burst: 32))
        XCTAssertEqual(gen.allowance(destinationRoom: 0), 0, "a guest not running yet")
        XCTAssertTrue(gen.asksForRoom)
        XCTAssertEqual(gen.allowance(destinationRoom: 1), .max, "a ring smaller than the burst is ready too")
        XCTAssertFalse(gen.asksForRoom, "from then on a full destination drops what it cannot take")
        let waiting = GenPort(GeneratorSpec(rate: .framesPerSecond(1e6), waitsWhenFull: true))
        XCTAssertEqual(waiting.allowance(destinationRoom: 7), 7, "full=wait: what there is room for")
        XCTAssertTrue(waiting.asksForRoom)
        let unrated = GenPort(GeneratorSpec())
        XCTAssertEqual(unrated.allowance(destinationRoom: 7), 7, "without a rate: what there is room for")
        XCTAssertTrue(unrated.asksForRoom)
    }

    func testALateWorkerCatchesUpInWholeBurstsUpToTheBatch() {
        // 1 Mpps in bursts of 32: a worker that comes back after 2 ms owes 2000 frames; it
        // sends as many whole bursts as the batch holds, not one burst per pass.
        let gen = GenPort(GeneratorSpec(rate: .framesPerSecond(1e6), burst: 32), batchCapacity: 256)
        let batch = PacketBatch(capacity: 256)
        XCTAssertEqual(gen.pull(queue: 0, into: batch), 0, "the schedule starts at the first pull")
        usleep(2000)
        batch.reset()
        XCTAssertEqual(gen.pull(queue: 0, into: batch), 256)
        batch.reset()
        XCTAssertEqual(gen.pull(queue: 0, into: batch), 256)
        XCTAssertEqual(gen.laggedFrames, 0, "2 ms is well inside the 50 ms it catches up")
    }
}

final class TrafficAnalyserTests: XCTestCase {
    /// Frames of a generator handed to a sink in the order `order` gives (indexes into
    /// what the generator sent; repeats are duplicates, missing ones lost).
    func analyse(sent: Int, order: [Int], flows: Int = 1) -> TrafficAnalysis {
        let gen = GenPort(GeneratorSpec(count: UInt64(sent), flows: flows), batchCapacity: 256)
        let generated = PacketBatch(capacity: 256)
        XCTAssertEqual(gen.pull(queue: 0, into: generated), sent)
        let handed = PacketBatch(capacity: 256)
        for i in order {
            let segment = generated.segments(of: i).lowerBound
            handed.append(base: generated.segmentBase(segment), length: UInt32(generated.length(of: i)), token: 0)
        }
        let sink = SinkPort()
        sink.push(queue: 0, from: handed)
        return sink.analyser.snapshot
    }

    func testInOrderIsExact() {
        let a = analyse(sent: 200, order: Array(0..<200), flows: 4)
        XCTAssertEqual(a.stamped, 200)
        XCTAssertEqual([a.lost, a.reordered, a.duplicates, a.late, a.unstamped], [0, 0, 0, 0, 0])
        XCTAssertEqual(a.flows.map(\.frames), [50, 50, 50, 50])
        XCTAssertEqual(a.latency.count, 200)
    }

    func testDropsAreCountedExactly() {
        let dropped: Set<Int> = [3, 4, 5, 77, 150, 199]
        let a = analyse(sent: 200, order: (0..<200).filter { !dropped.contains($0) })
        XCTAssertEqual(a.lost, 5, "the last frame's loss shows only when a later one comes")
        XCTAssertEqual(a.stamped, 194)
        XCTAssertEqual(a.flows[0].lost, 5)
    }

    func testReorderingAndDuplicatesAreCountedExactly() {
        var order = Array(0..<100)
        order.swapAt(10, 11)      // one frame late
        order.swapAt(20, 25)      // 25 early: 21-24 and 20 late behind it
        order.insert(50, at: 52)  // one duplicate
        order.append(99)          // and another of the last
        let a = analyse(sent: 100, order: order)
        XCTAssertEqual(a.stamped, 102)
        XCTAssertEqual(a.duplicates, 2)
        XCTAssertEqual(a.reordered, 1 + 1 + 4)
        XCTAssertEqual(a.lost, 0)
        XCTAssertEqual(a.late, 0)
    }

    func testAFrameTooFarBehindIsLate() {
        var order = Array(0..<200)
        order.remove(at: 5)
        order.append(5)
        let a = analyse(sent: 200, order: order)
        XCTAssertEqual(a.late, 1)
        XCTAssertEqual(a.lost, 1, "too late to tell: the loss stays")
    }

    func testTaggedFramesInSeveralSegmentsAreRead() throws {
        let gen = GenPort(GeneratorSpec(count: 1))
        let batch = PacketBatch(capacity: 4)
        _ = gen.pull(queue: 0, into: batch)
        let base = batch.segmentBase(0)
        var tag: [UInt8] = [0x81, 0x00, 0x00, 0x05]
        let handed = PacketBatch(capacity: 4)
        try tag.withUnsafeMutableBytes { t in
            handed.setSegment(0, base: base, length: 12)
            handed.setSegment(1, base: try XCTUnwrap(t.baseAddress), length: 4)
            handed.setSegment(2, base: base + 12, length: 52)
            handed.appendFrame(segments: 0..<3, length: 68)
            let sink = SinkPort()
            sink.push(queue: 0, from: handed)
            XCTAssertEqual(sink.analyser.snapshot.stamped, 1)
        }
    }

    /// The analyser counts a burst's unstamped frames together and reads the clock only once it
    /// meets a stamped one: a burst that mixes them, starting with an unstamped frame, counts both.
    func testABurstOfStampedAndUnstampedFramesCountsBoth() {
        // The generators own their frames' memory: both are kept until the sink has read them.
        let stamping = GenPort(GeneratorSpec(count: 3)), notStamping = GenPort(GeneratorSpec(count: 4, stamped: false))
        let stamped = PacketBatch(capacity: 8), plain = PacketBatch(capacity: 8)
        XCTAssertEqual(stamping.pull(queue: 0, into: stamped), 3)
        XCTAssertEqual(notStamping.pull(queue: 0, into: plain), 4)
        let handed = PacketBatch(capacity: 8)
        for i in 0..<4 {
            for (batch, n) in [(plain, 4), (stamped, 3)] where i < n {
                let segment = batch.segments(of: i).lowerBound
                handed.append(base: batch.segmentBase(segment), length: UInt32(batch.length(of: i)), token: 0)
            }
        }
        let sink = SinkPort()
        sink.push(queue: 0, from: handed)
        let a = sink.analyser.snapshot
        XCTAssertEqual([a.stamped, a.unstamped, a.lost, a.reordered], [3, 4, 0, 0])
        XCTAssertEqual(a.latency.count, 3)
        withExtendedLifetime((stamping, notStamping)) {}
    }

    func testForeignFramesAreUnstamped() {
        let sink = SinkPort()
        let gen = GenPort(GeneratorSpec(count: 10, stamped: false))
        let batch = PacketBatch(capacity: 16)
        _ = gen.pull(queue: 0, into: batch)
        sink.push(queue: 0, from: batch)
        XCTAssertEqual(sink.analyser.snapshot.unstamped, 10)
        XCTAssertEqual(sink.analyser.snapshot.stamped, 0)
    }
}
