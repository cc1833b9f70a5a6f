import CFerry
import Glibc
import Virtio

/// Descriptor flags a packed ring adds (virtio 1.2 §2.8), and the event suppression values.
public enum PackedFlag {
    public static let avail: UInt16 = 1 << 7    // VIRTQ_DESC_F_AVAIL
    public static let used: UInt16 = 1 << 15    // VIRTQ_DESC_F_USED
    public static let eventsEnabled: UInt16 = 0
    public static let eventsDisabled: UInt16 = 1
    public static let eventAtDescriptor: UInt16 = 2

    /// The AVAIL/USED bits a driver sets to make a descriptor available in the lap of `wrap`.
    public static func available(wrap: Bool) -> UInt16 { wrap ? avail : used }
}

/// The driver side of one packed virtqueue (virtio 1.2 §2.8), written into a
/// `GuestRAM`: the descriptor ring and the two event suppression structures at
/// chosen guest addresses, buffers from a bump allocator. Chains are written
/// at the driver's position, the head's flags last, as a driver does; buffer
/// ids go round 0 ..< size, skipping those in flight.
public final class MockPackedRing: MockDriverRing {
    public let ram: GuestRAM
    public let size: UInt16
    public let ringGPA: UInt64
    public let driverEventGPA: UInt64
    public let deviceEventGPA: UInt64
    public let buffers: Range<UInt64>
    public var nextBuffer: UInt64
    /// The driver's next position to fill and its wrap counter there.
    public private(set) var position: UInt16 = 0
    public private(set) var wrap = true
    /// Where the driver expects the next used descriptor, and the device's wrap counter there.
    public private(set) var usedPosition: UInt16 = 0
    public private(set) var usedWrap = true
    /// Descriptors offered and not yet seen used.
    public private(set) var outstanding = 0
    private var nextID: UInt16 = 0
    /// Per buffer id: the ring descriptors its chain took and its buffers, to read RX data back.
    private var chains: [UInt16: (descriptors: Int, buffers: [(address: UInt64, length: Int)])] = [:]
    /// Ids of the chains in flight, in the order they were offered.
    private var offeredOrder: [UInt16] = []
    /// Reads used descriptors as a driver that negotiated VIRTIO_F_IN_ORDER
    /// does: one may stand for every chain offered up to its id, the ring
    /// skipping all their descriptors (virtio 1.2 §2.8, "In-order use of descriptors").
    public var readsBatchesInOrder = false

    public init(ram: GuestRAM, size: UInt16, at gpa: UInt64? = nil, buffers: Range<UInt64>? = nil) {
        self.ram = ram
        self.size = size
        let ring = gpa ?? ram.base
        precondition(ring % 16 == 0, "test bug: §2.8 aligns the descriptor ring to 16")
        ringGPA = ring
        driverEventGPA = ring + 16 * UInt64(size)
        deviceEventGPA = driverEventGPA + 4
        let end = deviceEventGPA + 4
        self.buffers = Self.bufferArea(ram: ram, ring: ring, ringsEnd: end, given: buffers)
        nextBuffer = self.buffers.lowerBound
        ram.write([UInt8](repeating: 0, count: Int(end - ring)), at: ring)
    }

    public var areaGPAs: (desc: UInt64, avail: UInt64, used: UInt64) { (ringGPA, driverEventGPA, deviceEventGPA) }

    // MARK: Offering chains

    @discardableResult
    public func offerChain(_ buffers: [(address: UInt64, length: UInt32, writable: Bool)], indirect: Bool) -> UInt16 {
        offerChain(buffers, indirect: indirect, id: nil)
    }

    /// Writes a chain over the given buffers at the driver's position, the
    /// head's flags last, and returns its id (`id`, or the next free one).
    @discardableResult
    public func offerChain(_ buffers: [(address: UInt64, length: UInt32, writable: Bool)], indirect: Bool = false,
                           id given: UInt16?) -> UInt16 {
        precondition(!buffers.isEmpty)
        let id = given ?? takeID()
        var ring: [(address: UInt64, length: UInt32, flags: UInt16)]
        if indirect {
            let table = allocateBuffer(16 * buffers.count)
            for (i, b) in buffers.enumerated() {
                writeDescriptor(atGPA: table + UInt64(16 * i), address: b.address, length: b.length, id: 0,
                                flags: b.writable ? DescriptorFlag.write : 0)
            }
            ring = [(table, UInt32(16 * buffers.count), DescriptorFlag.indirect)]
        } else {
            ring = buffers.enumerated().map { i, b in
                (b.address, b.length,
                 (b.writable ? DescriptorFlag.write : 0) | (i < buffers.count - 1 ? DescriptorFlag.next : 0))
            }
        }
        precondition(outstanding + ring.count <= Int(size), "test bug: more descriptors outstanding than the ring holds")
        chains[id] = (ring.count, buffers.map { ($0.address, Int($0.length)) })
        offeredOrder.append(id)
        offerRaw(ring.map { ($0.address, $0.length, id, $0.flags) })
        return id
    }

    /// Writes descriptors as given (flags without AVAIL/USED, which follow the
    /// driver's wrap counter) at the driver's position, the first one's flags
    /// last with a release store, and moves the position past them.
    public func offerRaw(_ descriptors: [(address: UInt64, length: UInt32, id: UInt16, flags: UInt16)]) {
        let head = position
        let headWrap = wrap
        for (i, d) in descriptors.enumerated() {
            let flags = d.flags | PackedFlag.available(wrap: wrap)
            writeDescriptor(position, address: d.address, length: d.length, id: d.id, flags: i == 0 ? nil : flags)
            advance(&position, &wrap, by: 1)
        }
        outstanding += descriptors.count
        setFlags(head, (descriptors[0].flags) | PackedFlag.available(wrap: headWrap))
    }

    private func takeID() -> UInt16 {
        for _ in 0..<Int(size) {
            let id = nextID
            nextID = (nextID + 1) % size
            if chains[id] == nil { return id }
        }
        preconditionFailure("test bug: every buffer id is in flight")
    }

    private func advance(_ p: inout UInt16, _ w: inout Bool, by n: Int) {
        for _ in 0..<n {
            p += 1
            if p == size {
                p = 0
                w.toggle()
            }
        }
    }

    // MARK: Raw access, for hostile tests

    /// Forgets what is outstanding, as a driver that no longer waits for used
    /// descriptors before offering the slots again (a fuzz's scribbling driver).
    public func forgetOutstanding() {
        outstanding = 0
        chains = [:]
        offeredOrder = []
        finished = [:]
    }

    /// Writes a ring descriptor; its flags only when given (nil leaves them for `setFlags`).
    public func writeDescriptor(_ position: UInt16, address: UInt64, length: UInt32, id: UInt16, flags: UInt16?) {
        precondition(position < size, "test bug: position beyond the ring")
        let p = ram.pointer(ringGPA + 16 * UInt64(position), count: 16)
        p.storeBytes(of: address.littleEndian, as: UInt64.self)
        p.storeBytes(of: length.littleEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: id.littleEndian, toByteOffset: 12, as: UInt16.self)
        if let flags { p.storeBytes(of: flags.littleEndian, toByteOffset: 14, as: UInt16.self) }
    }

    /// Writes a descriptor anywhere, e.g. into an indirect table.
    public func writeDescriptor(atGPA gpa: UInt64, address: UInt64, length: UInt32, id: UInt16, flags: UInt16) {
        let p = ram.pointer(gpa, count: 16)
        p.storeBytes(of: address.littleEndian, as: UInt64.self)
        p.storeBytes(of: length.littleEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: id.littleEndian, toByteOffset: 12, as: UInt16.self)
        p.storeBytes(of: flags.littleEndian, toByteOffset: 14, as: UInt16.self)
    }

    /// Stores a descriptor's flags with release, as a driver publishes a head.
    public func setFlags(_ position: UInt16, _ flags: UInt16) {
        ferry_store_release_u16(ram.pointer(ringGPA + 16 * UInt64(position) + 14, count: 2), flags)
    }

    public func flags(_ position: UInt16) -> UInt16 {
        ferry_load_acquire_u16(ram.pointer(ringGPA + 16 * UInt64(position) + 14, count: 2))
    }

    /// The driver's event suppression structure: what it asks of the device's calls.
    public var driverEventFlags: UInt16 {
        get { ram.pointer(driverEventGPA + 2, count: 2).load(as: UInt16.self) }
        set { ram.pointer(driverEventGPA + 2, count: 2).storeBytes(of: newValue, as: UInt16.self) }
    }

    public var driverEventOffWrap: UInt16 {
        get { ram.pointer(driverEventGPA, count: 2).load(as: UInt16.self) }
        set { ram.pointer(driverEventGPA, count: 2).storeBytes(of: newValue, as: UInt16.self) }
    }

    /// The device's event suppression flags: whether it wants kicks.
    public var deviceEventFlags: UInt16 { ram.pointer(deviceEventGPA + 2, count: 2).load(as: UInt16.self) }

    // MARK: Reading the device's side

    /// The used descriptors written since the last call, in ring order.
    public func usedEntries() -> [UsedEntry] {
        var out: [UsedEntry] = []
        while outstanding > 0 {
            let flags = self.flags(usedPosition)
            let avail = flags & PackedFlag.avail != 0
            let used = flags & PackedFlag.used != 0
            guard avail == used, used == usedWrap else { break }
            let p = ram.pointer(ringGPA + 16 * UInt64(usedPosition), count: 16)
            let id = p.load(fromByteOffset: 12, as: UInt16.self)
            guard chains[id] != nil else { preconditionFailure("used id \(id) names no chain in flight") }
            let length = p.load(fromByteOffset: 8, as: UInt32.self)
            // In order, the chains offered before this one are used with it (length 0: the device wrote nothing).
            let batch = readsBatchesInOrder ? Array(offeredOrder.prefix(through: offeredOrder.firstIndex(of: id)!))
                : [id]
            for done in batch {
                let chain = chains[done]!
                out.append(UsedEntry(id: UInt32(done), length: done == id ? length : 0))
                advance(&usedPosition, &usedWrap, by: chain.descriptors)
                outstanding -= chain.descriptors
                finished[done] = chain.buffers
                chains[done] = nil
                offeredOrder.remove(at: offeredOrder.firstIndex(of: done)!)
            }
        }
        return out
    }

    /// Buffers of chains seen used, by id, until the id is offered again.
    private var finished: [UInt16: [(address: UInt64, length: Int)]] = [:]

    public func buffers(ofUsed id: UInt16) -> [(address: UInt64, length: Int)]? { finished[id] }

}
