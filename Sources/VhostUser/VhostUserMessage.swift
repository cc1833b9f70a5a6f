import Platform

/// One decoded, checked vhost-user message and the descriptors that rode with it.
public struct VhostUserMessage: Sendable {
    /// What the front-end asked for.
    public let request: VhostUserRequest
    /// The header's flags word, as received.
    public let flags: UInt32
    /// The payload, parsed and checked for syntax.
    public let payload: Payload
    /// The descriptors that arrived with this message; the receiver takes the ones it keeps.
    public let descriptors: ReceivedDescriptors

    /// Creates a message; the decoder is the normal source of these.
    public init(request: VhostUserRequest, flags: UInt32, payload: Payload, descriptors: ReceivedDescriptors = ReceivedDescriptors()) {
        self.request = request
        self.flags = flags
        self.payload = payload
        self.descriptors = descriptors
    }

    /// True when the header's need_reply bit is set; it only binds once REPLY_ACK was negotiated.
    public var needsReply: Bool { flags & VhostUserHeader.needReplyFlag != 0 }

    /// The payload of a message, by shape (vhost-user.rst, "Payload").
    public enum Payload: Equatable, Sendable {
        /// No payload (size 0).
        case none
        /// A single u64: features, status, MTU, a REPLY_ACK status.
        case u64(UInt64)
        /// A vring state description: index and a number (size, base, enable).
        case vringState(index: UInt32, num: UInt32)
        /// A vring address description (SET_VRING_ADDR).
        case vringAddress(VringAddress)
        /// A vring index u64 as SET_VRING_KICK/CALL/ERR carry it; `hasFD` is false when bit 8 (no fd) is set.
        case vringFile(index: UInt32, hasFD: Bool)
        /// A memory regions description (SET_MEM_TABLE), one descriptor per region in the same order.
        case memoryTable([MemoryRegionInfo])
        /// A single memory region description (ADD_MEM_REG, REM_MEM_REG).
        case memoryRegion(MemoryRegionInfo)
        /// A log description (SET_LOG_BASE): the log's size and where it starts in its file.
        case dirtyLog(size: UInt64, offset: UInt64)
    }

    // vhost-user.rst, "Memory regions description": the table holds region0 … region7.
    /// The most regions SET_MEM_TABLE may carry.
    public static let maxMemoryTableRegions = 8
    // vhost-user.rst, "SET_VRING_KICK": "Bits (0-7) of the payload contain the vring index".
    static let vringFileIndexMask: UInt64 = 0xff
    // vhost-user.rst, "SET_VRING_KICK": "Bit 8 is the invalid FD flag".
    /// Bit 8 of a SET_VRING_KICK/CALL/ERR payload: no descriptor follows, poll instead.
    public static let vringFileNoFDFlag: UInt64 = 1 << 8
}

/// A vring address description: where the three parts of a split ring live in the
/// front-end's address space (vhost-user.rst, "A vring address description"; 40 bytes).
public struct VringAddress: Equatable, Hashable, Sendable {
    /// The vring index; the device decides whether it names a queue it has.
    public var index: UInt32
    /// vring flags; bit 0 (VHOST_VRING_F_LOG) asks for used-ring logging.
    public var flags: UInt32
    /// The descriptor table's front-end user address.
    public var descUserAddr: UInt64
    /// The used ring's front-end user address.
    public var usedUserAddr: UInt64
    /// The available ring's front-end user address.
    public var availUserAddr: UInt64
    /// The guest physical address used to log used-ring writes.
    public var logGuestAddr: UInt64

    /// Creates an address description.
    public init(index: UInt32, flags: UInt32, descUserAddr: UInt64, usedUserAddr: UInt64, availUserAddr: UInt64, logGuestAddr: UInt64) {
        self.index = index
        self.flags = flags
        self.descUserAddr = descUserAddr
        self.usedUserAddr = usedUserAddr
        self.availUserAddr = availUserAddr
        self.logGuestAddr = logGuestAddr
    }

    // index u32, flags u32, then four u64 (vhost-user.rst, "A vring address description").
    static let wireSize = 40
}

/// One guest memory region as the front-end describes it (vhost-user.rst, "Memory regions description"; 32 bytes).
public struct MemoryRegionInfo: Equatable, Hashable, Sendable {
    /// Guest physical address of the first byte.
    public var guestPhysAddr: UInt64
    /// Length in bytes; never 0 once decoded.
    public var size: UInt64
    /// The front-end's virtual address of the first byte.
    public var userAddr: UInt64
    /// Where the region starts in the descriptor's mapping.
    public var mmapOffset: UInt64

    /// Creates a region description.
    public init(guestPhysAddr: UInt64, size: UInt64, userAddr: UInt64, mmapOffset: UInt64) {
        self.guestPhysAddr = guestPhysAddr
        self.size = size
        self.userAddr = userAddr
        self.mmapOffset = mmapOffset
    }

    // guest address, size, user address, mmap offset: four u64 (vhost-user.rst, "Memory regions description").
    static let wireSize = 32

    /// Why the region cannot be used by anyone, or nil. Ranges must end inside the 64-bit
    /// space (end = start + size representable) so later translation can add without checks.
    public var problem: VhostUserProtocolError.RegionProblem? {
        if size == 0 { return .zeroSize }
        if guestPhysAddr.addingReportingOverflow(size).overflow { return .guestRangeOverflows }
        if userAddr.addingReportingOverflow(size).overflow { return .userRangeOverflows }
        if mmapOffset.addingReportingOverflow(size).overflow { return .mmapRangeOverflows }
        return nil
    }
}

// MARK: - Syntax: one payload shape at a time

/// A parsed payload, or why its bytes are not one.
enum ParseResult {
    case parsed(VhostUserMessage.Payload)
    case refused(VhostUserProtocolError.Reason)
}

extension VhostUserMessage.Payload {
    /// Parses `bytes` as `layout`. The sizes of fixed layouts were checked by the request's
    /// policy already; the reader re-checks anyway so this is safe on any input.
    static func parse(_ layout: RequestPolicy.PayloadLayout, from bytes: UnsafeRawBufferPointer) -> ParseResult {
        var reader = PayloadReader(bytes)
        let mismatch = VhostUserProtocolError.Reason.payloadSizeMismatch(expected: layout.minimumSize, got: bytes.count)
        switch layout {
        case .empty:
            return bytes.isEmpty ? .parsed(.none) : .refused(mismatch)

        case .u64:
            guard bytes.count == 8, let value = reader.u64() else { return .refused(mismatch) }
            return .parsed(.u64(value))

        case .vringState:
            guard bytes.count == 8, let index = reader.u32(), let num = reader.u32() else { return .refused(mismatch) }
            return .parsed(.vringState(index: index, num: num))

        case .vringAddress:
            guard bytes.count == VringAddress.wireSize,
                  let index = reader.u32(), let flags = reader.u32(),
                  let desc = reader.u64(), let used = reader.u64(), let avail = reader.u64(), let log = reader.u64()
            else { return .refused(mismatch) }
            return .parsed(.vringAddress(VringAddress(
                index: index, flags: flags, descUserAddr: desc, usedUserAddr: used, availUserAddr: avail, logGuestAddr: log)))

        case .vringFile:
            guard bytes.count == 8, let value = reader.u64() else { return .refused(mismatch) }
            let defined = VhostUserMessage.vringFileIndexMask | VhostUserMessage.vringFileNoFDFlag
            guard value & ~defined == 0 else { return .refused(.reservedPayloadBits(value)) }
            return .parsed(.vringFile(index: UInt32(value & VhostUserMessage.vringFileIndexMask),
                                       hasFD: value & VhostUserMessage.vringFileNoFDFlag == 0))

        case .memoryTable:
            // num regions u32, padding u32, then exactly that many regions: the front-end sends
            // only the regions in use, so the size must match the count.
            guard let count = reader.u32(), reader.u32() != nil else { return .refused(mismatch) }
            guard count <= VhostUserMessage.maxMemoryTableRegions else { return .refused(.tooManyRegions(count: count)) }
            let expected = 8 + Int(count) * MemoryRegionInfo.wireSize
            guard bytes.count == expected else { return .refused(.payloadSizeMismatch(expected: expected, got: bytes.count)) }
            var regions: [MemoryRegionInfo] = []
            regions.reserveCapacity(Int(count))
            for index in 0..<Int(count) {
                guard let region = reader.region() else { return .refused(.payloadSizeMismatch(expected: expected, got: bytes.count)) }
                if let problem = region.problem { return .refused(.invalidRegion(index: index, problem)) }
                regions.append(region)
            }
            return .parsed(.memoryTable(regions))

        case .memoryRegion:
            // A u64 of padding precedes the region (vhost-user.rst, "Single memory region description").
            guard bytes.count == 8 + MemoryRegionInfo.wireSize, reader.u64() != nil, let region = reader.region() else {
                return .refused(mismatch)
            }
            if let problem = region.problem { return .refused(.invalidRegion(index: 0, problem)) }
            return .parsed(.memoryRegion(region))

        case .logDescription:
            guard bytes.count == 16, let size = reader.u64(), let offset = reader.u64() else { return .refused(mismatch) }
            return .parsed(.dirtyLog(size: size, offset: offset))
        }
    }
}

/// Reads little-endian fields in order; every read is bounds-checked and returns nil past the end,
/// so a short or hostile payload can never make a load trap.
struct PayloadReader {
    private let bytes: UnsafeRawBufferPointer
    private var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    private mutating func read<T: FixedWidthInteger>(_: T.Type) -> T? {
        let width = MemoryLayout<T>.size
        guard bytes.count - offset >= width else { return nil }
        // The wire is little-endian (vhost-user.rst says "machine native"; every host we run on is LE).
        // SAFETY: the guard above: width bytes remain after offset in the payload.
        let value = T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += width
        return value
    }

    mutating func u32() -> UInt32? { read(UInt32.self) }
    mutating func u64() -> UInt64? { read(UInt64.self) }

    mutating func region() -> MemoryRegionInfo? {
        guard let gpa = u64(), let size = u64(), let user = u64(), let offset = u64() else { return nil }
        return MemoryRegionInfo(guestPhysAddr: gpa, size: size, userAddr: user, mmapOffset: offset)
    }
}
