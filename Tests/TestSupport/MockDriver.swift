import CFerry
import Glibc
import Packets
import Platform
import Virtio

/// Descriptor flags as a driver writes them (virtio 1.2 §2.7.5).
public enum DescriptorFlag {
    public static let next: UInt16 = 1       // VIRTQ_DESC_F_NEXT
    public static let write: UInt16 = 2      // VIRTQ_DESC_F_WRITE
    public static let indirect: UInt16 = 4   // VIRTQ_DESC_F_INDIRECT
}

/// A test guest's RAM: one memfd, described to the back-end as regions the way
/// SET_MEM_TABLE would. The test writes the driver's side through its own
/// mapping; the back-end maps the same memfd again in `makeGuestMemory`.
public final class GuestRAM {
    public let shared: SharedMemory
    public let regions: [GuestMemoryRegionInfo]

    public init(size: Int = 4 << 20, regions: [GuestMemoryRegionInfo]) throws {
        shared = try SharedMemory(length: size, name: "ferry-test-guest")
        self.regions = regions
    }

    /// One region covering the whole memfd at guest address 0x4000_0000 (so
    /// address 0 is outside guest memory).
    public static func oneRegion(size: Int = 4 << 20) throws -> GuestRAM {
        try GuestRAM(size: size, regions: [
            GuestMemoryRegionInfo(guestPhysicalAddress: 0x4000_0000, size: UInt64(size),
                                  frontEndAddress: 0x7f00_0000_0000, mmapOffset: 0),
        ])
    }

    /// Two halves of the memfd, adjacent in guest-physical space but far apart
    /// in the front-end's, so the back-end maps them separately and a buffer
    /// crossing 0x4000_0000 + size/2 must be translated in two pieces.
    public static func twoRegions(size: Int = 4 << 20) throws -> GuestRAM {
        let half = UInt64(size / 2)
        return try GuestRAM(size: size, regions: [
            GuestMemoryRegionInfo(guestPhysicalAddress: 0x4000_0000, size: half,
                                  frontEndAddress: 0x7f00_0000_0000, mmapOffset: 0),
            GuestMemoryRegionInfo(guestPhysicalAddress: 0x4000_0000 + half, size: half,
                                  frontEndAddress: 0x7e00_0000_0000, mmapOffset: half),
        ])
    }

    /// Guest-physical address of the first region.
    public var base: UInt64 { regions[0].guestPhysicalAddress }

    /// The back-end's view: the regions mapped from the memfd, as after SET_MEM_TABLE.
    public func makeGuestMemory() throws -> GuestMemory {
        try GuestMemory(regions: regions, fds: regions.map { _ in shared.fd.rawValue })
    }

    private func region(containing gpa: UInt64) -> GuestMemoryRegionInfo? {
        regions.first { gpa >= $0.guestPhysicalAddress && gpa - $0.guestPhysicalAddress < $0.size }
    }

    /// The test's own pointer to guest-physical `gpa`; `count` bytes must lie in one region.
    public func pointer(_ gpa: UInt64, count: Int = 1) -> UnsafeMutableRawPointer {
        guard let r = region(containing: gpa), gpa - r.guestPhysicalAddress + UInt64(count) <= r.size else {
            preconditionFailure("test bug: gpa 0x\(String(gpa, radix: 16))+\(count) is not in one region")
        }
        return shared.base + Int(r.mmapOffset + gpa - r.guestPhysicalAddress)
    }

    /// Where the front-end would see `gpa` (ring addresses travel in this space).
    public func frontEndAddress(_ gpa: UInt64) -> FrontEndAddress {
        guard let r = region(containing: gpa) else { preconditionFailure("test bug: gpa not in RAM") }
        return FrontEndAddress(r.frontEndAddress + gpa - r.guestPhysicalAddress)
    }

    /// Copies `bytes` to `gpa`, across adjacent regions if need be.
    public func write(_ bytes: [UInt8], at gpa: UInt64) {
        var done = 0
        while done < bytes.count {
            let at = gpa + UInt64(done)
            guard let r = region(containing: at) else { preconditionFailure("test bug: gpa not in RAM") }
            let n = min(bytes.count - done, Int(r.guestPhysicalAddress + r.size - at))
            bytes.withUnsafeBytes { pointer(at, count: n).copyMemory(from: $0.baseAddress! + done, byteCount: n) }
            done += n
        }
    }

    /// Reads `count` bytes at `gpa`, across adjacent regions if need be.
    public func read(_ gpa: UInt64, count: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            let at = gpa + UInt64(out.count)
            guard let r = region(containing: at) else { preconditionFailure("test bug: gpa not in RAM") }
            let n = min(count - out.count, Int(r.guestPhysicalAddress + r.size - at))
            out += UnsafeRawBufferPointer(start: pointer(at, count: n), count: n)
        }
        return out
    }
}

/// One element of the used ring.
public struct UsedEntry: Equatable, Sendable {
    public var id: UInt32
    public var length: UInt32
    public init(id: UInt32, length: UInt32) { self.id = id; self.length = length }
}

/// A frame as the guest reads it back from its RX ring.
public struct ReceivedFrame: Equatable {
    public var header: [UInt8]
    public var frame: [UInt8]
    /// The header's num_buffers (1 with a legacy 10-byte header, which has none).
    public var numBuffers: Int
    public var entries: [UsedEntry]
}

/// What the mock drivers of both ring layouts share: buffers from a bump
/// allocator in an area after the rings, chains offered over them, and the
/// bytes a device wrote into a used chain read back.
public protocol MockDriverRing: AnyObject {
    /// Lays the ring out from `gpa` (the first region's start when nil); buffers from `buffers`,
    /// by default the rest of the region after the ring.
    init(ram: GuestRAM, size: UInt16, at gpa: UInt64?, buffers: Range<UInt64>?)
    var ram: GuestRAM { get }
    var size: UInt16 { get }
    /// Where SET_VRING_ADDR's three areas lie (a packed ring's: the descriptor
    /// ring, the driver's and the device's event suppression structures).
    var areaGPAs: (desc: UInt64, avail: UInt64, used: UInt64) { get }
    var buffers: Range<UInt64> { get }
    /// The next free byte of `buffers`.
    var nextBuffer: UInt64 { get set }
    /// Chains `buffers` (directly or through an indirect table), makes it available, returns its head or id.
    @discardableResult
    func offerChain(_ buffers: [(address: UInt64, length: UInt32, writable: Bool)], indirect: Bool) -> UInt16
    /// The buffers of the chain a used entry names.
    func buffers(ofUsed id: UInt16) -> [(address: UInt64, length: Int)]?
    /// The used entries the device published since the last call.
    func usedEntries() -> [UsedEntry]
}

extension MockDriverRing {
    /// The buffer area a ring at `gpa` ending at `ringsEnd` gets: `given`, or the rest of its region from the next page.
    static func bufferArea(ram: GuestRAM, ring gpa: UInt64, ringsEnd: UInt64, given: Range<UInt64>?) -> Range<UInt64> {
        if let given { return given }
        let r = ram.regions.first { gpa >= $0.guestPhysicalAddress && gpa - $0.guestPhysicalAddress < $0.size }!
        return (ringsEnd + 0xfff) / 0x1000 * 0x1000 ..< r.guestPhysicalAddress + r.size
    }

    /// Points `queue` at this ring, as SET_VRING_NUM, SET_VRING_ADDR and SET_FEATURES would.
    public func configure(_ queue: any VirtqueueControl, eventIndex: Bool = false, headerLength: Int = 12,
                          mergeableBuffers: Bool = false, guestChecksum: Bool = true, inOrder: Bool = false) {
        var c = RingConfiguration()
        c.size = size
        c.descAddress = ram.frontEndAddress(areaGPAs.desc)
        c.availAddress = ram.frontEndAddress(areaGPAs.avail)
        c.usedAddress = ram.frontEndAddress(areaGPAs.used)
        c.eventIndex = eventIndex
        c.headerLength = headerLength
        c.mergeableBuffers = mergeableBuffers
        c.acceptedHeaderFlags = guestChecksum ? 0x03 : 0
        c.inOrder = inOrder
        queue.configuration = c
    }

    /// `length` bytes of buffer space, 16-aligned; wraps to the start of the area when it runs out.
    public func allocateBuffer(_ length: Int) -> UInt64 {
        precondition(UInt64(length) <= UInt64(buffers.count), "test bug: buffer larger than the buffer area")
        var at = (nextBuffer + 15) / 16 * 16
        if at + UInt64(length) > buffers.upperBound { at = buffers.lowerBound }
        nextBuffer = at + UInt64(length)
        return at
    }

    /// Writes `header + frame` into fresh buffers cut at `split` (lengths
    /// summing to the total; one buffer by default), chains them, directly or
    /// through an indirect table, and makes the chain available. Returns its head or id.
    @discardableResult
    public func offerTX(frame: [UInt8], header: [UInt8] = [UInt8](repeating: 0, count: 12),
                        split: [Int]? = nil, indirect: Bool = false) -> UInt16 {
        let bytes = header + frame
        let lengths = split ?? [bytes.count]
        precondition(lengths.reduce(0, +) == bytes.count, "test bug: split does not add up to the bytes")
        var pieces: [(address: UInt64, length: UInt32, writable: Bool)] = []
        var at = 0
        for len in lengths {
            let gpa = allocateBuffer(len)
            ram.write(Array(bytes[at..<at + len]), at: gpa)
            pieces.append((gpa, UInt32(len), false))
            at += len
        }
        return offerChain(pieces, indirect: indirect)
    }

    /// Offers one device-writable chain of buffers of these sizes. Returns its head or id.
    @discardableResult
    public func offerRX(bufferSizes: [Int], indirect: Bool = false) -> UInt16 {
        offerChain(bufferSizes.map { (address: allocateBuffer($0), length: UInt32($0), writable: true) },
                   indirect: indirect)
    }

    /// Reads every newly used RX entry as frames (`ReceivedFrame.gather`).
    public func receive(headerLength: Int = 12) -> [ReceivedFrame] {
        ReceivedFrame.gather(usedEntries(), headerLength: headerLength, read: readRX)
    }

    /// The bytes the device wrote into the chain of one used entry.
    public func readRX(_ entry: UsedEntry) -> [UInt8] {
        guard let buffers = buffers(ofUsed: UInt16(truncatingIfNeeded: entry.id)) else {
            preconditionFailure("used entry \(entry.id) names no chain this ring offered")
        }
        var out: [UInt8] = []
        var left = Int(entry.length)
        for b in buffers where left > 0 {
            let n = min(left, b.length)
            out += ram.read(b.address, count: n)
            left -= n
        }
        return out
    }
}

/// The driver side of one split virtqueue (virtio 1.2 §2.7), written into a
/// `GuestRAM`: descriptor table, avail ring and used ring at chosen guest
/// addresses, buffers from a bump allocator. Descriptors are handed out round
/// robin, so a test keeps at most `size` of them outstanding.
public final class MockSplitRing: MockDriverRing {
    public let ram: GuestRAM
    public let size: UInt16
    public let descGPA: UInt64
    public let availGPA: UInt64
    public let usedGPA: UInt64
    public let buffers: Range<UInt64>
    public var nextBuffer: UInt64
    private var nextDescriptor: UInt16 = 0
    private var usedSeen: UInt16 = 0
    /// The buffers of each chain offered, by head, to read RX data back.
    private var chains: [UInt16: [(address: UInt64, length: Int)]] = [:]

    /// Lays the rings out from `gpa` (the first region's start by default) and zeroes them; buffers come from
    /// `buffers`, by default the rest of the region after the rings.
    public init(ram: GuestRAM, size: UInt16, at gpa: UInt64? = nil, buffers: Range<UInt64>? = nil) {
        self.ram = ram
        self.size = size
        let desc = gpa ?? ram.base
        precondition(desc % 16 == 0, "test bug: §2.7 aligns the descriptor table to 16")
        // The layout Ferry's own driver side uses (a virtio-user port's rings).
        let layout = DriverSplitRing.Layout(size: size)
        descGPA = desc
        availGPA = desc + UInt64(layout.availOffset)
        usedGPA = desc + UInt64(layout.usedOffset)
        let ringsEnd = desc + UInt64(layout.byteCount)
        self.buffers = Self.bufferArea(ram: ram, ring: desc, ringsEnd: ringsEnd, given: buffers)
        nextBuffer = self.buffers.lowerBound
        ram.write([UInt8](repeating: 0, count: Int(ringsEnd - desc)), at: desc)
    }

    public var areaGPAs: (desc: UInt64, avail: UInt64, used: UInt64) { (descGPA, availGPA, usedGPA) }

    // MARK: Allocation

    public func allocateDescriptor() -> UInt16 {
        let d = nextDescriptor
        nextDescriptor = (nextDescriptor + 1) % size
        return d
    }

    // MARK: Offering chains

    /// Builds a chain over the given buffers and makes it available. Returns the head.
    @discardableResult
    public func offerChain(_ buffers: [(address: UInt64, length: UInt32, writable: Bool)], indirect: Bool = false) -> UInt16 {
        precondition(!buffers.isEmpty)
        let head: UInt16
        if indirect {
            let table = allocateBuffer(16 * buffers.count)
            for (i, b) in buffers.enumerated() {
                let more = i < buffers.count - 1
                writeDescriptor(atGPA: table + UInt64(16 * i), address: b.address, length: b.length,
                                flags: (b.writable ? DescriptorFlag.write : 0) | (more ? DescriptorFlag.next : 0),
                                next: more ? UInt16(i + 1) : 0)
            }
            head = allocateDescriptor()
            writeDescriptor(head, address: table, length: UInt32(16 * buffers.count), flags: DescriptorFlag.indirect)
        } else {
            let ids = buffers.map { _ in allocateDescriptor() }
            for (i, b) in buffers.enumerated() {
                let more = i < buffers.count - 1
                writeDescriptor(ids[i], address: b.address, length: b.length,
                                flags: (b.writable ? DescriptorFlag.write : 0) | (more ? DescriptorFlag.next : 0),
                                next: more ? ids[i + 1] : 0)
            }
            head = ids[0]
        }
        chains[head] = buffers.map { ($0.address, Int($0.length)) }
        makeAvailable(head)
        return head
    }

    /// Puts `head` in the next avail slot and publishes the new avail index.
    public func makeAvailable(_ head: UInt16) {
        let i = availIndex
        setAvailEntry(slot: i, head: head)
        availIndex = i &+ 1
    }

    // MARK: Raw access, for hostile tests

    public func writeDescriptor(_ index: UInt16, address: UInt64, length: UInt32, flags: UInt16, next: UInt16 = 0) {
        precondition(index < size, "test bug: descriptor index beyond the table")
        writeDescriptor(atGPA: descGPA + 16 * UInt64(index), address: address, length: length, flags: flags, next: next)
    }

    /// Writes a descriptor anywhere, e.g. into an indirect table.
    public func writeDescriptor(atGPA gpa: UInt64, address: UInt64, length: UInt32, flags: UInt16, next: UInt16 = 0) {
        let p = ram.pointer(gpa, count: 16)
        p.storeBytes(of: address.littleEndian, as: UInt64.self)
        p.storeBytes(of: length.littleEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: flags.littleEndian, toByteOffset: 12, as: UInt16.self)
        p.storeBytes(of: next.littleEndian, toByteOffset: 14, as: UInt16.self)
    }

    /// Writes avail.ring[slot mod size] without publishing it.
    public func setAvailEntry(slot: UInt16, head: UInt16) {
        ram.pointer(availGPA + 4 + 2 * UInt64(slot % size), count: 2).storeBytes(of: head.littleEndian, as: UInt16.self)
    }

    /// avail.idx; setting it publishes (release, as a driver's barrier before the store).
    public var availIndex: UInt16 {
        get { ferry_load_acquire_u16(ram.pointer(availGPA + 2, count: 2)) }
        set { ferry_store_release_u16(ram.pointer(availGPA + 2, count: 2), newValue) }
    }

    /// avail.flags (VRING_AVAIL_F_NO_INTERRUPT = 1).
    public var availFlags: UInt16 {
        get { ram.pointer(availGPA, count: 2).load(as: UInt16.self) }
        set { ram.pointer(availGPA, count: 2).storeBytes(of: newValue, as: UInt16.self) }
    }

    /// avail.used_event: the used index at which the driver wants a call (EVENT_IDX).
    public var usedEvent: UInt16 {
        get { ram.pointer(availGPA + 4 + 2 * UInt64(size), count: 2).load(as: UInt16.self) }
        set { ram.pointer(availGPA + 4 + 2 * UInt64(size), count: 2).storeBytes(of: newValue, as: UInt16.self) }
    }

    // MARK: Reading the device's side

    /// used.idx as the device last published it.
    public var usedIndex: UInt16 {
        get { ferry_load_acquire_u16(ram.pointer(usedGPA + 2, count: 2)) }
        set { ferry_store_release_u16(ram.pointer(usedGPA + 2, count: 2), newValue) }
    }

    /// used.flags (VRING_USED_F_NO_NOTIFY = 1).
    public var usedFlags: UInt16 { ram.pointer(usedGPA, count: 2).load(as: UInt16.self) }

    /// The used entries published since the last call.
    public func usedEntries() -> [UsedEntry] {
        let end = usedIndex
        var out: [UsedEntry] = []
        while usedSeen != end {
            let p = ram.pointer(usedGPA + 4 + 8 * UInt64(usedSeen % size), count: 8)
            out.append(UsedEntry(id: p.load(as: UInt32.self), length: p.load(fromByteOffset: 4, as: UInt32.self)))
            usedSeen &+= 1
        }
        return out
    }

    public func buffers(ofUsed id: UInt16) -> [(address: UInt64, length: Int)]? { chains[id] }

}

extension ReceivedFrame {
    /// Used RX entries as frames: a frame spans as many entries as its header's
    /// num_buffers says (§5.1.6.4); a legacy header has no num_buffers and a frame is one entry.
    public static func gather(_ used: [UsedEntry], headerLength: Int, read: (UsedEntry) -> [UInt8]) -> [ReceivedFrame] {
        var entries = used[...]
        var frames: [ReceivedFrame] = []
        while let first = entries.popFirst() {
            var bytes = read(first)
            var numBuffers = 1
            if headerLength >= 12, bytes.count >= 12 {
                numBuffers = Int(bytes[10]) | Int(bytes[11]) << 8
            }
            var used = [first]
            while used.count < numBuffers, let more = entries.popFirst() {
                bytes += read(more)
                used.append(more)
            }
            let h = min(headerLength, bytes.count)
            frames.append(ReceivedFrame(header: Array(bytes[..<h]), frame: Array(bytes[h...]),
                                        numBuffers: numBuffers, entries: used))
        }
        return frames
    }
}

// MARK: Frames

/// An Ethernet frame of `length` bytes: unicast destination and source, IPv4
/// ethertype, then a payload pattern that differs per `seed`.
public func ethernetFrame(length: Int, seed: UInt8 = 0) -> [UInt8] {
    precondition(length >= 14)
    var f: [UInt8] = [0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00]
    f.reserveCapacity(length)
    for i in 14..<length { f.append(UInt8(truncatingIfNeeded: i &* 31) &+ seed) }
    return f
}

/// Frames a test pushes, kept alive in one allocation that batch segments point into.
public final class FrameStore {
    private let storage: UnsafeMutableRawPointer
    private let capacity: Int
    private var used = 0

    public init(capacity: Int = 1 << 20) {
        self.capacity = capacity
        storage = .allocate(byteCount: capacity, alignment: 64)
    }

    deinit { storage.deallocate() }

    /// Appends `frame` to `batch` with `header`, cut into segments of the given lengths (one by default).
    public func append(_ frame: [UInt8], header: [UInt8] = [UInt8](repeating: 0, count: 12), to batch: PacketBatch,
                       segments: [Int]? = nil) {
        let lengths = segments ?? [frame.count]
        precondition(lengths.reduce(0, +) == frame.count && header.count <= PacketBatch.headerSize)
        precondition(used + frame.count <= capacity && batch.count < batch.capacity && batch.freeSegments >= lengths.count)
        let i = batch.count
        let h = batch.header(i)
        h.initializeMemory(as: UInt8.self, repeating: 0, count: PacketBatch.headerSize)
        header.withUnsafeBytes { h.copyMemory(from: $0.baseAddress!, byteCount: header.count) }
        let first = batch.segmentCount
        var next = first
        var at = 0
        for len in lengths {
            let p = storage + used
            frame.withUnsafeBytes { p.copyMemory(from: $0.baseAddress! + at, byteCount: len) }
            batch.setSegment(next, base: p, length: UInt32(len))
            next += 1
            used += len
            at += len
        }
        batch.appendFrame(segments: first..<next, length: UInt32(frame.count), token: UInt32(i))
    }

    public func reset() { used = 0 }
}

extension PacketBatch {
    /// Frame `i`'s bytes, gathered from its segments.
    public func frameBytes(_ i: Int) -> [UInt8] {
        var out: [UInt8] = []
        for s in segmentRanges(i) { out += UnsafeRawBufferPointer(start: s.base, count: s.length) }
        return out
    }

    /// Frame `i`'s virtio-net header as the batch carries it.
    public func headerBytes(_ i: Int, count: Int = PacketBatch.headerSize) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: header(i), count: count))
    }

    /// Frame `i`'s segments.
    public func segmentRanges(_ i: Int) -> [(base: UnsafeMutableRawPointer, length: Int)] {
        segments(of: i).map { (segmentBase($0), segmentLength($0)) }
    }
}

/// A small seeded generator (SplitMix64), so a fuzz run is the same every time.
public struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
