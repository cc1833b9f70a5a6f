// Microbenchmarks of Ferry's data path: guest address translation, and one
// worker burst on a split virtqueue (pull + release on TX, push on RX).
//
//   swift package benchmark --no-progress                  # everything
//   swift package benchmark --filter 'ring.*' --no-progress # one group
//
// Translation benchmarks run 1M lookups per iteration and report per lookup
// (columns marked *); the time column is whole nanoseconds, so read the
// throughput row (M lookups/s) for resolution.
//
// Ring benchmarks measure exactly one burst of 256 frames per iteration. The
// driver's side (re-posting the 256 chains with raw stores into the avail ring
// and publishing avail.idx) runs before startMeasurement() and is not in the
// numbers; "overhead: empty measured region" is what the framework itself adds
// to each. mallocCountTotal shows the measured region allocates nothing.
//
// Fixtures follow Tests/TestSupport/MockDriver.swift (GuestRAM, MockSplitRing);
// a benchmark target cannot depend on the test support target.

import Benchmark
import CFerry
import Model
import Packets
import Platform
import Ports
import Switching
import Virtio

let burst = 256
let queueSize: UInt16 = 1024

let benchmarks: @Sendable () -> Void = {
    // No .instructions: its row stays empty on this VM (no hardware counters),
    // and the framework's bookkeeping for it mallocs 16 times inside every
    // measured region (seen with an empty region), which would read as the
    // data path's allocations.
    let metrics: [BenchmarkMetric] = [.wallClock, .throughput, .mallocCountTotal]
    // Translation: many lookups per iteration, reported per lookup.
    let perLookup = Benchmark.Configuration(
        metrics: metrics,
        timeUnits: .nanoseconds,
        warmupIterations: 2,
        scalingFactor: .mega,
        maxDuration: .seconds(2),
        maxIterations: 1_000
    )
    // Rings: one burst of 256 frames per iteration, reported per burst.
    let perBurst = Benchmark.Configuration(
        metrics: metrics,
        timeUnits: .nanoseconds,
        warmupIterations: 100,
        scalingFactor: .one,
        maxDuration: .seconds(2),
        maxIterations: 100_000
    )

    // The framework's own cost per iteration (clock and malloc-counter reads
    // around an empty region), included in every per-burst figure below.
    Benchmark("overhead: empty measured region", configuration: perBurst) { benchmark in
        benchmark.startMeasurement()
        benchmark.stopMeasurement()
    }

    // MARK: Forwarding database: lookups and learns at 1k and 64k entries

    for entries in [1_000, 64_000] {
        Benchmark("fdb lookup hit, \(entries) entries", configuration: perLookup) { benchmark, f in
            fdbLookups(benchmark, f)
        } setup: {
            FDBFixture(entries: entries)
        }
        Benchmark("fdb learn (refresh), \(entries) entries", configuration: perLookup) { benchmark, f in
            fdbLearns(benchmark, f)
        } setup: {
            FDBFixture(entries: entries)
        }
    }

    // MARK: Address translation

    Benchmark("translate 1 region, 64 B", configuration: perLookup) { benchmark, f in
        translateHits(benchmark, f, length: 64)
    } setup: {
        try TranslationFixture(layout: .one, spread: .all, length: 64)
    }

    Benchmark("translate 4 regions spread, 64 B", configuration: perLookup) { benchmark, f in
        translateHits(benchmark, f, length: 64)
    } setup: {
        try TranslationFixture(layout: .four, spread: .all, length: 64)
    }

    Benchmark("translate 4 regions last only, 64 B", configuration: perLookup) { benchmark, f in
        translateHits(benchmark, f, length: 64)
    } setup: {
        try TranslationFixture(layout: .four, spread: .lastRegion, length: 64)
    }

    // A 1518-byte buffer that starts just below the boundary of two adjacent
    // regions, walked piece by piece as readChain/writeFrame do (2 pieces).
    Benchmark("translatePiece across boundary, 1518 B", configuration: perLookup) { benchmark, f in
        let memory = f.memory, addresses = f.addresses
        benchmark.startMeasurement()
        var acc: UInt = 0
        for i in benchmark.scaledIterations {
            var address = addresses[i & TranslationFixture.mask]
            var left: UInt32 = 1518
            while left > 0 {
                guard let (p, piece) = memory.translatePiece(GuestAddress(address), length: left) else {
                    fatalError("benchmark bug: buffer not in guest memory")
                }
                acc ^= UInt(bitPattern: p)
                address &+= UInt64(piece)
                left &-= piece
            }
        }
        benchmark.stopMeasurement()
        blackHole(acc)
    } setup: {
        try TranslationFixture(layout: .twoAdjacent, spread: .acrossBoundary, length: 1518)
    }

    // MARK: TX: pull + release

    for kind in TXChain.allCases {
        Benchmark("ring pull+release 256x64 B, \(kind.label)", configuration: perBurst) { benchmark, f in
            f.tx.refill()
            f.batch.reset()
            benchmark.startMeasurement()
            let n = f.txQueue.pull(into: f.batch, counters: f.counters)
            f.txQueue.release()
            benchmark.stopMeasurement()
            f.check(pulled: n)
        } setup: {
            try BurstFixture(tx: kind, rxFrameLength: nil)
        }
    }

    // The same from a packed ring: single buffers with IN_ORDER off (one used descriptor per
    // chain) and on (one for the burst), and chains of a header and a frame descriptor.
    for (inOrder, chained) in [(false, false), (true, false), (false, true)] {
        Benchmark("packed ring pull+release 256x64 B, \(chained ? "2-desc hdr+data" : "1 desc")\(inOrder ? ", in order" : "")",
                  configuration: perBurst) { benchmark, f in
            f.refill()
            f.batch.reset()
            benchmark.startMeasurement()
            let n = f.queue.pull(into: f.batch, counters: f.counters)
            f.queue.release()
            benchmark.stopMeasurement()
            f.check(pulled: n)
        } setup: {
            try PackedPullFixture(inOrder: inOrder, chained: chained)
        }
    }

    // MARK: RX: push

    // With the dirty log on (a live migration's dirty phase), every write also
    // marks its page: the same bursts, log on and off, side by side.
    for length in [64, 1518] {
        for logging in [false, true] {
            Benchmark("ring push 256x\(length) B, mergeable 2048 B\(logging ? ", dirty log on" : "")",
                      configuration: perBurst) { benchmark, f in
                f.rx.refill()
                benchmark.startMeasurement()
                f.rxQueue.push(from: f.batch, counters: f.counters)
                benchmark.stopMeasurement()
                f.checkPushed()
            } setup: {
                try BurstFixture(tx: nil, rxFrameLength: length, logging: logging)
            }
        }
    }

    // The same into a packed ring's single buffers (four frames per line of descriptors).
    for length in [64, 1518] {
        for logging in [false, true] {
            Benchmark("packed ring push 256x\(length) B, 2048 B buffers\(logging ? ", dirty log on" : "")",
                      configuration: perBurst) { benchmark, f in
                f.refill()
                benchmark.startMeasurement()
                f.queue.push(from: f.batch, counters: f.counters)
                benchmark.stopMeasurement()
                f.checkPushed()
            } setup: {
                try PackedPushFixture(frameLength: length, logging: logging)
            }
        }
    }

    // MARK: A sink's burst: the traffic analyser's read of each frame (W1's sink)

    for stamped in [false, true] {
        Benchmark("sink push 256x64 B UDP, \(stamped ? "stamped" : "unstamped")", configuration: perBurst) { benchmark, f in
            benchmark.startMeasurement()
            f.sink.push(queue: 0, from: f.batch)
            benchmark.stopMeasurement()
        } setup: {
            SinkFixture(stamped: stamped)
        }
    }

    // MARK: A whole guest-to-guest burst, as Worker.forward does it

    for logging in [false, true] {
        Benchmark("burst guest-to-guest 256x64 B (pull, push, release)\(logging ? ", dirty log on" : "")", configuration: perBurst) { benchmark, f in
            f.tx.refill()
            f.rx.refill()
            f.batch.reset()
            benchmark.startMeasurement()
            let n = f.txQueue.pull(into: f.batch, counters: f.counters)
            f.rxQueue.push(from: f.batch, counters: f.counters)
            f.txQueue.release()
            benchmark.stopMeasurement()
            f.check(pulled: n)
            f.checkPushed()
        } setup: {
            try BurstFixture(tx: .single, rxFrameLength: 0, logging: logging)
        }
    }
}

/// A burst of a generator's 64-byte IPv4/UDP frames, with or without the lab's stamp, handed to
/// a sink as W1's worker hands the front-end's frames to it (the analyser reads every one).
final class SinkFixture {
    let generator: GenPort
    let batch = PacketBatch(capacity: burst)
    let sink = SinkPort()

    init(stamped: Bool) {
        // The generator owns the frames' memory: kept for the fixture's life.
        generator = GenPort(GeneratorSpec(burst: burst, stamped: stamped), batchCapacity: burst)
        guard generator.pull(queue: 0, into: batch) == burst else { fatalError("benchmark bug: short generator burst") }
    }
}

/// `translate` of every address in turn, `scaledIterations` times, as the
/// data path calls it: a local `GuestMemory`, the result used.
func translateHits(_ benchmark: Benchmark, _ f: TranslationFixture, length: UInt32) {
    let memory = f.memory, addresses = f.addresses
    benchmark.startMeasurement()
    var acc: UInt = 0
    for i in benchmark.scaledIterations {
        let p = memory.translate(GuestAddress(addresses[i & TranslationFixture.mask]), length: length)
        acc ^= UInt(bitPattern: p)
    }
    benchmark.stopMeasurement()
    blackHole(acc)
}

// MARK: - Guest RAM (after Tests/TestSupport/MockDriver.swift's GuestRAM)

/// A guest's RAM on one memfd, described as regions the way SET_MEM_TABLE
/// would; `memory` is the back-end's own mapping of it.
final class BenchRAM {
    let shared: SharedMemory
    let regions: [GuestMemoryRegionInfo]
    let memory: GuestMemory

    init(size: Int, regions: [GuestMemoryRegionInfo]) throws {
        let shared = try SharedMemory(length: size, name: "ferry-bench-guest")
        let fd = shared.fd.rawValue
        self.shared = shared
        self.regions = regions
        memory = try GuestMemory(regions: regions, fds: regions.map { _ in fd })
    }

    private func region(containing gpa: UInt64) -> GuestMemoryRegionInfo {
        guard let r = regions.first(where: { gpa >= $0.guestPhysicalAddress && gpa - $0.guestPhysicalAddress < $0.size })
        else { preconditionFailure("benchmark bug: gpa 0x\(String(gpa, radix: 16)) not in RAM") }
        return r
    }

    /// The driver's pointer to guest-physical `gpa`.
    func pointer(_ gpa: UInt64) -> UnsafeMutableRawPointer {
        let r = region(containing: gpa)
        return shared.base + Int(r.mmapOffset + gpa - r.guestPhysicalAddress)
    }

    /// Where the front-end sees `gpa` (ring addresses travel in this space).
    func frontEndAddress(_ gpa: UInt64) -> FrontEndAddress {
        let r = region(containing: gpa)
        return FrontEndAddress(r.frontEndAddress + gpa - r.guestPhysicalAddress)
    }
}

/// SplitMix64, so every run translates the same addresses.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

// MARK: - Translation fixture

final class TranslationFixture {
    enum Layout { case one, four, twoAdjacent }
    enum Spread { case all, lastRegion, acrossBoundary }

    static let count = 4096
    static let mask = count - 1

    let ram: BenchRAM
    var memory: GuestMemory { ram.memory }
    /// Guest-physical addresses to translate, cycled through.
    let addresses: UnsafeMutablePointer<UInt64>

    init(layout: Layout, spread: Spread, length: UInt64) throws {
        let regionSize: UInt64 = 4 << 20
        let regions: [GuestMemoryRegionInfo]
        switch layout {
        case .one:
            regions = [GuestMemoryRegionInfo(guestPhysicalAddress: 0x4000_0000, size: regionSize,
                                             frontEndAddress: 0x7f00_0000_0000, mmapOffset: 0)]
        case .four:
            // Scattered in both spaces, as a guest with RAM below and above 4 GiB plus hotplugged DIMMs.
            let gpas: [UInt64] = [0x0, 0x4000_0000, 0x1_0000_0000, 0x2_0000_0000]
            let vas: [UInt64] = [0x7f00_0000_0000, 0x7e00_0000_0000, 0x7d00_0000_0000, 0x7c00_0000_0000]
            regions = (0..<4).map {
                GuestMemoryRegionInfo(guestPhysicalAddress: gpas[$0], size: regionSize,
                                      frontEndAddress: vas[$0], mmapOffset: UInt64($0) * regionSize)
            }
        case .twoAdjacent:
            // Adjacent in guest-physical space, apart in the front-end's: two mappings.
            regions = [
                GuestMemoryRegionInfo(guestPhysicalAddress: 0x4000_0000, size: regionSize,
                                      frontEndAddress: 0x7f00_0000_0000, mmapOffset: 0),
                GuestMemoryRegionInfo(guestPhysicalAddress: 0x4000_0000 + regionSize, size: regionSize,
                                      frontEndAddress: 0x7e00_0000_0000, mmapOffset: regionSize),
            ]
        }
        ram = try BenchRAM(size: Int(regionSize) * regions.count, regions: regions)
        addresses = .allocate(capacity: Self.count)
        var rng = SplitMix64(state: 0xfe77)
        for i in 0..<Self.count {
            switch spread {
            case .all:
                let r = regions[Int.random(in: 0..<regions.count, using: &rng)]
                addresses[i] = r.guestPhysicalAddress + UInt64.random(in: 0...(r.size - length), using: &rng)
            case .lastRegion:
                let r = regions[regions.count - 1]
                addresses[i] = r.guestPhysicalAddress + UInt64.random(in: 0...(r.size - length), using: &rng)
            case .acrossBoundary:
                let boundary = regions[1].guestPhysicalAddress
                addresses[i] = boundary - UInt64.random(in: 1...(length - 1), using: &rng)
            }
        }
        // Every address must hit, or the loop measures the miss path.
        for i in 0..<Self.count where spread != .acrossBoundary {
            precondition(memory.translate(GuestAddress(addresses[i]), length: UInt32(length)) != nil)
        }
    }

    deinit { addresses.deallocate() }
}

// MARK: - Driver side of a split ring (after MockSplitRing)

enum DescriptorFlag {
    static let next: UInt16 = 1
    static let write: UInt16 = 2
    static let indirect: UInt16 = 4
}

/// The driver's side of one split virtqueue laid out in `ram` at `gpa`, with a
/// fixed set of chains (`heads`) that it re-posts before every burst.
final class DriverRing {
    let ram: BenchRAM
    let size: UInt16
    let descGPA: UInt64
    let availGPA: UInt64
    let usedGPA: UInt64
    let avail: UnsafeMutableRawPointer
    let queue: SplitVirtqueue
    /// Heads of the chains to post each burst.
    let heads: UnsafeMutablePointer<UInt16>
    var headCount = 0
    var availIndex: UInt16 = 0

    init(ram: BenchRAM, size: UInt16, at gpa: UInt64, queue: SplitVirtqueue) {
        let n = UInt64(size)
        self.ram = ram
        self.size = size
        self.queue = queue
        descGPA = gpa
        availGPA = gpa + 16 * n
        usedGPA = (availGPA + 6 + 2 * n + 3) / 4 * 4
        let end = usedGPA + 6 + 8 * n
        ram.pointer(gpa).initializeMemory(as: UInt8.self, repeating: 0, count: Int(end - gpa))
        avail = ram.pointer(availGPA)
        heads = .allocate(capacity: Int(size))
        queue.configuration.size = size
        queue.configuration.descAddress = ram.frontEndAddress(descGPA)
        queue.configuration.availAddress = ram.frontEndAddress(availGPA)
        queue.configuration.usedAddress = ram.frontEndAddress(usedGPA)
    }

    deinit { heads.deallocate() }

    func writeDescriptor(atGPA gpa: UInt64, address: UInt64, length: UInt32, flags: UInt16, next: UInt16 = 0) {
        let p = ram.pointer(gpa)
        p.storeBytes(of: address.littleEndian, as: UInt64.self)
        p.storeBytes(of: length.littleEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: flags.littleEndian, toByteOffset: 12, as: UInt16.self)
        p.storeBytes(of: next.littleEndian, toByteOffset: 14, as: UInt16.self)
    }

    func writeDescriptor(_ index: UInt16, address: UInt64, length: UInt32, flags: UInt16, next: UInt16 = 0) {
        precondition(index < size)
        writeDescriptor(atGPA: descGPA + 16 * UInt64(index), address: address, length: length, flags: flags, next: next)
    }

    func addHead(_ head: UInt16) {
        heads[headCount] = head
        headCount += 1
    }

    /// The driver's work between bursts, with raw stores and no allocation:
    /// writes every head into the next avail slots, publishes the new
    /// avail.idx (release), and puts used_event far ahead of the used index
    /// (EVENT_IDX: a guest busy in NAPI poll wants no interrupt), so the
    /// device's notify check runs but never writes the call eventfd.
    @inline(__always)
    func refill() {
        let mask = size &- 1
        for k in 0..<headCount {
            let slot = (availIndex &+ UInt16(truncatingIfNeeded: k)) & mask
            avail.storeBytes(of: heads[k], toByteOffset: 4 + 2 * Int(slot), as: UInt16.self)
        }
        availIndex &+= UInt16(truncatingIfNeeded: headCount)
        avail.storeBytes(of: queue.usedIndex.rawValue &+ 0x8000, toByteOffset: 4 + 2 * Int(size), as: UInt16.self)
        ferry_store_release_u16(avail + 2, availIndex)
    }
}

// MARK: - Burst fixture

enum TXChain: CaseIterable {
    case single, headerAndData, indirect
    var label: String {
        switch self {
        case .single: "1 desc"
        case .headerAndData: "2-desc hdr+data"
        case .indirect: "indirect hdr+data"
        }
    }
}

/// One guest (8 MiB, one region) with a TX ring of 256 posted 64-byte frames
/// and/or an RX ring of 256 posted 2048-byte mergeable buffers.
/// `rxFrameLength`: nil for no RX ring, 0 to push what TX pulls, else the
/// length of the 256 frames pushed from a host buffer.
final class BurstFixture {
    static let frameLength = 64
    static let header = 12
    static let rxBufferSize = 2048

    let ram: BenchRAM
    let txQueue = SplitVirtqueue(index: 1)
    let rxQueue = SplitVirtqueue(index: 0)
    var tx: DriverRing!
    var rx: DriverRing!
    let batch = PacketBatch(capacity: burst)
    let counters = QueueCounters()
    let callFD: FileDescriptor
    var frames: UnsafeMutableRawPointer? = nil
    /// The dirty log's file and the log, when the rings log (a live migration).
    var logFile: SharedMemory? = nil
    var log: DirtyPageLog? = nil

    init(tx kind: TXChain?, rxFrameLength: Int?, logging: Bool = false) throws {
        let base: UInt64 = 0x4000_0000
        ram = try BenchRAM(size: 8 << 20, regions: [
            GuestMemoryRegionInfo(guestPhysicalAddress: base, size: 8 << 20,
                                  frontEndAddress: 0x7f00_0000_0000, mmapOffset: 0),
        ])
        callFD = try EventFD.create()

        if let kind {
            // Rings at base, headers at +0x10000, frames at +0x20000, indirect tables at +0x40000.
            let ring = DriverRing(ram: ram, size: queueSize, at: base, queue: txQueue)
            let hdrArea = base + 0x10000, frameArea = base + 0x20000, tableArea = base + 0x40000
            for i in 0..<burst {
                let seed = UInt8(truncatingIfNeeded: i)
                let hdr = hdrArea + UInt64(16 * i)
                let frame = frameArea + UInt64(128 * i)
                switch kind {
                case .single:
                    // Header and frame back to back in one buffer.
                    ram.pointer(frame).initializeMemory(as: UInt8.self, repeating: 0, count: Self.header)
                    Self.writeEthernet(ram.pointer(frame + UInt64(Self.header)), length: Self.frameLength, seed: seed)
                    ring.writeDescriptor(UInt16(i), address: frame, length: UInt32(Self.header + Self.frameLength),
                                         flags: 0)
                    ring.addHead(UInt16(i))
                case .headerAndData:
                    ram.pointer(hdr).initializeMemory(as: UInt8.self, repeating: 0, count: Self.header)
                    Self.writeEthernet(ram.pointer(frame), length: Self.frameLength, seed: seed)
                    let h = UInt16(2 * i)
                    ring.writeDescriptor(h, address: hdr, length: UInt32(Self.header), flags: DescriptorFlag.next,
                                         next: h + 1)
                    ring.writeDescriptor(h + 1, address: frame, length: UInt32(Self.frameLength), flags: 0)
                    ring.addHead(h)
                case .indirect:
                    ram.pointer(hdr).initializeMemory(as: UInt8.self, repeating: 0, count: Self.header)
                    Self.writeEthernet(ram.pointer(frame), length: Self.frameLength, seed: seed)
                    let table = tableArea + UInt64(32 * i)
                    ring.writeDescriptor(atGPA: table, address: hdr, length: UInt32(Self.header),
                                         flags: DescriptorFlag.next, next: 1)
                    ring.writeDescriptor(atGPA: table + 16, address: frame, length: UInt32(Self.frameLength), flags: 0)
                    ring.writeDescriptor(UInt16(i), address: table, length: 32, flags: DescriptorFlag.indirect)
                    ring.addHead(UInt16(i))
                }
            }
            txQueue.configuration.eventIndex = true
            txQueue.configuration.headerLength = Self.header
            txQueue.callFD = callFD.rawValue
            try txQueue.start(memory: ram.memory)
            tx = ring
        }

        if let rxFrameLength {
            // Ring at +0x80000, buffers from +0x100000 (256 x 2 KiB).
            let ring = DriverRing(ram: ram, size: queueSize, at: base + 0x80000, queue: rxQueue)
            let bufArea = base + 0x10_0000
            for i in 0..<burst {
                ring.writeDescriptor(UInt16(i), address: bufArea + UInt64(Self.rxBufferSize * i),
                                     length: UInt32(Self.rxBufferSize), flags: DescriptorFlag.write)
                ring.addHead(UInt16(i))
            }
            rxQueue.configuration.eventIndex = true
            rxQueue.configuration.headerLength = Self.header
            rxQueue.configuration.mergeableBuffers = true
            rxQueue.callFD = callFD.rawValue
            try rxQueue.start(memory: ram.memory)
            rx = ring
            if rxFrameLength > 0 {
                // Frames from the host side (a pool buffer or another guest), one segment each.
                let stride = (rxFrameLength + 63) / 64 * 64
                let f = UnsafeMutableRawPointer.allocate(byteCount: stride * burst, alignment: 64)
                for i in 0..<burst {
                    Self.writeEthernet(f + stride * i, length: rxFrameLength, seed: UInt8(truncatingIfNeeded: i))
                    batch.append(base: f + stride * i, length: UInt32(rxFrameLength), token: UInt32(i))
                }
                frames = f
            }
        }
        if logging {
            // A log covering the guest (one bit per 4 KiB page from address 0), as QEMU sizes it.
            let bytes = (base + (8 << 20)) / DirtyPageLog.pageSize / 8
            let file = try SharedMemory(length: Int(bytes + 4095) / 4096 * 4096, name: "ferry-bench-log")
            let dirty = try DirtyPageLog(fd: file.fd.rawValue, size: bytes, offset: 0)
            if let tx { txQueue.configuration.setDirtyLog(dirty, usedRing: GuestAddress(tx.usedGPA)) }
            if let rx { rxQueue.configuration.setDirtyLog(dirty, usedRing: GuestAddress(rx.usedGPA)) }
            logFile = file
            log = dirty
        }
    }

    deinit { frames?.deallocate() }

    static func writeEthernet(_ p: UnsafeMutableRawPointer, length: Int, seed: UInt8) {
        let head: [UInt8] = [0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00]
        for (i, b) in head.enumerated() { p.storeBytes(of: b, toByteOffset: i, as: UInt8.self) }
        for i in 14..<length {
            p.storeBytes(of: UInt8(truncatingIfNeeded: i &* 31) &+ seed, toByteOffset: i, as: UInt8.self)
        }
    }

    /// Outside the measured region: the burst must have done the real work.
    func check(pulled n: Int) {
        precondition(n == burst && batch.count == burst && txQueue.isRunning,
                     "pull took \(n) frames, batch \(batch.count), error \(String(describing: txQueue.error))")
    }

    func checkPushed() {
        precondition(rxQueue.isRunning && rxQueue.usedIndex.rawValue == rx.availIndex,
                     "push left used \(rxQueue.usedIndex) of avail \(rx.availIndex), error \(String(describing: rxQueue.error))")
    }
}


// MARK: - Forwarding database

/// A table holding `entries` learned MACs on VLAN 1, and their keys in a
/// shuffled order so lookups do not walk the table sequentially.
final class FDBFixture: @unchecked Sendable {
    static let mask = (1 << 16) - 1
    let table: ForwardingDatabase
    let keys: [FDBKey]

    init(entries: Int) {
        table = ForwardingDatabase(capacity: 65_536)
        var keys: [FDBKey] = []
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for i in 0..<entries {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let mac = (state >> 16) & 0x00FE_FFFF_FFFF_FFFF  // unicast: group bit clear
            let key = FDBKey(vlan: 1, mac: mac)
            _ = table.learn(key, port: .init(truncating: i % 8), now: 1)
            keys.append(key)
        }
        // Repeat the keys to a power of two so the loop can mask its index.
        self.keys = (0...Self.mask).map { keys[$0 % keys.count] }
    }
}

func fdbLookups(_ benchmark: Benchmark, _ f: FDBFixture) {
    let table = f.table, keys = f.keys
    var acc: UInt = 0
    benchmark.startMeasurement()
    for i in benchmark.scaledIterations {
        acc &+= UInt(table.lookup(keys[i & FDBFixture.mask])?.rawValue ?? 0)
    }
    benchmark.stopMeasurement()
    blackHole(acc)
}

func fdbLearns(_ benchmark: Benchmark, _ f: FDBFixture) {
    let table = f.table, keys = f.keys
    benchmark.startMeasurement()
    for i in benchmark.scaledIterations {
        _ = table.learn(keys[i & FDBFixture.mask], port: .init(truncating: i % 8), now: 2)
    }
    benchmark.stopMeasurement()
}
