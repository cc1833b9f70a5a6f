import Glibc
import Platform

/// One region of a guest's RAM as the front-end describes it (vhost-user.rst,
/// "Memory region description").
public struct GuestMemoryRegionInfo: Equatable, Sendable {
    public var guestPhysicalAddress: UInt64
    public var size: UInt64
    public var frontEndAddress: UInt64
    public var mmapOffset: UInt64

    public init(guestPhysicalAddress: UInt64, size: UInt64, frontEndAddress: UInt64, mmapOffset: UInt64) {
        self.guestPhysicalAddress = guestPhysicalAddress
        self.size = size
        self.frontEndAddress = frontEndAddress
        self.mmapOffset = mmapOffset
    }
}

public enum GuestMemoryError: Error, Equatable, CustomStringConvertible {
    case empty
    case tooManyRegions(Int, max: Int)
    case zeroSize(region: Int)
    case wraps(region: Int)
    case overlaps(region: Int, other: Int)
    case mapFailed(region: Int, SystemError)
    /// The region's descriptor is not a file that can back memory (a pipe, a socket, an eventfd ...).
    case notAFile(region: Int, DescriptorKind)
    /// The file ends before the region does: touching the rest would raise SIGBUS.
    case fileTooShort(region: Int, fileSize: UInt64, needed: UInt64)
    /// Rounded up to the file's page size, the mapping would not fit the address space.
    case tooLarge(region: Int)
    case noSuchRegion(guestPhysicalAddress: UInt64)

    public var description: String {
        switch self {
        case .empty: "memory table has no regions"
        case .tooManyRegions(let n, let max): "memory table has \(n) regions, at most \(max) are supported"
        case .zeroSize(let r): "memory region \(r) has size 0"
        case .wraps(let r): "memory region \(r) wraps past the end of the address space"
        case .overlaps(let r, let o): "memory region \(r) overlaps region \(o)"
        case .mapFailed(let r, let e): "memory region \(r) cannot be mapped: \(e)"
        case .notAFile(let r, let kind):
            "memory region \(r) comes with \(kind), not a regular file (memfd, hugetlbfs or tmpfs file)"
        case .fileTooShort(let r, let size, let needed):
            "memory region \(r) needs \(needed) bytes of its file, which has \(size)"
        case .tooLarge(let r): "memory region \(r) is too large to map"
        case .noSuchRegion(let gpa): "no memory region starts at guest address 0x\(String(gpa, radix: 16))"
        }
    }
}

/// What happened to a guest's memory file after it was mapped.
public enum GuestMemoryDamage: Equatable, Sendable, CustomStringConvertible {
    /// An access past the file's new end raised SIGBUS; the region now reads zeros.
    case faulted(region: Int)
    /// The file is shorter than the region needs (seen before any access faulted).
    case shrank(region: Int, fileSize: UInt64, needed: UInt64)

    public var description: String {
        switch self {
        case .faulted(let r):
            "guest memory region \(r) shrank under Ferry: an access past its file's new end raised SIGBUS "
                + "(the front-end truncated the file; a sealed memfd cannot shrink)"
        case .shrank(let r, let size, let needed):
            "guest memory region \(r) shrank under Ferry: its file has \(size) bytes, the region needs \(needed) "
                + "(the front-end truncated the file; a sealed memfd cannot shrink)"
        }
    }
}

/// A guest's memory, mapped once when the table arrives and validated then:
/// regions are non-empty, do not wrap, and overlap neither in guest-physical nor
/// in front-end address space. Translation never returns a pointer for a range
/// that is not wholly inside one mapped region.
public final class GuestMemory: @unchecked Sendable {
    /// One mapped region, laid out for the translation loop.
    @usableFromInline
    struct Region {
        @usableFromInline var guestStart: UInt64
        @usableFromInline var guestEnd: UInt64   // exclusive; guestStart + size cannot wrap (validated)
        @usableFromInline var frontEndStart: UInt64
        @usableFromInline var frontEndEnd: UInt64
        @usableFromInline var host: UnsafeMutableRawPointer
    }

    public static let maxRegions = 32

    /// One region's file and mapping. The file is kept open to see whether it shrinks.
    final class MappedFile: @unchecked Sendable {
        let mapping: MemoryMapping
        let file: FileDescriptor
        /// The file's length the region needs: its mmap offset plus its size.
        let needed: UInt64

        init(mapping: MemoryMapping, file: consuming FileDescriptor, needed: UInt64) {
            self.mapping = mapping
            self.file = file
            self.needed = needed
        }
    }

    public let regions: [GuestMemoryRegionInfo]
    private let mappings: [MappedFile]
    @usableFromInline let table: UnsafeMutablePointer<Region>
    @usableFromInline let count: Int

    /// Maps each region from its file, descriptor `i` for region `i` (SET_MEM_TABLE's
    /// order); the memory owns them from now on. Descriptors it does not take
    /// (the table was refused) stay in `files`.
    public convenience init(regions: [GuestMemoryRegionInfo], files: ReceivedDescriptors) throws(GuestMemoryError) {
        precondition(regions.count == files.count, "one descriptor per region")
        try Self.validate(regions)
        var maps: [MappedFile] = []
        for (i, r) in regions.enumerated() {
            guard let file = files.take(i) else { preconditionFailure("region \(i)'s descriptor was taken before") }
            maps.append(try Self.map(r, file: file, region: i))
        }
        self.init(validated: regions, mappings: maps)
    }

    /// Maps each region from a descriptor the caller keeps (tests, benchmarks,
    /// fuzzing): the memory maps its own duplicate of each.
    public convenience init(regions: [GuestMemoryRegionInfo], fds: [Int32]) throws(GuestMemoryError) {
        precondition(regions.count == fds.count, "one descriptor per region")
        let files = ReceivedDescriptors()
        for (i, fd) in fds.enumerated() { files.append(try Self.duplicate(fd, region: i)) }
        try self.init(regions: regions, files: files)
    }

    private init(validated: [GuestMemoryRegionInfo], mappings: [MappedFile]) {
        self.regions = validated
        self.mappings = mappings
        self.count = validated.count
        self.table = .allocate(capacity: max(validated.count, 1))
        for (i, r) in validated.enumerated() {
            // SAFETY: map() mapped mmapOffset + size bytes, so base + offset is inside the mapping.
            let host = mappings[i].mapping.base + Int(r.mmapOffset)
            table[i] = Region(guestStart: r.guestPhysicalAddress, guestEnd: r.guestPhysicalAddress + r.size,
                              frontEndStart: r.frontEndAddress, frontEndEnd: r.frontEndAddress + r.size, host: host)
        }
    }

    deinit { table.deallocate() }

    /// A table with one more region (ADD_MEM_REG), mapped from `file`, which the
    /// new table owns; existing mappings are shared, not remapped.
    public func adding(_ region: GuestMemoryRegionInfo, file: consuming FileDescriptor) throws(GuestMemoryError) -> GuestMemory {
        let all = regions + [region]
        try Self.validate(all)
        let map = try Self.map(region, file: file, region: regions.count)
        return GuestMemory(validated: all, mappings: mappings + [map])
    }

    /// As `adding(_:file:)`, from a descriptor the caller keeps (tests, fuzzing).
    public func adding(_ region: GuestMemoryRegionInfo, fd: Int32) throws(GuestMemoryError) -> GuestMemory {
        try adding(region, file: try Self.duplicate(fd, region: regions.count))
    }

    private static func duplicate(_ fd: Int32, region: Int) throws(GuestMemoryError) -> FileDescriptor {
        do { return try FileDescriptor.duplicating(fd) } catch { throw .mapFailed(region: region, error) }
    }

    /// A table without the region that starts at `guestPhysicalAddress` (REM_MEM_REG); nil when it was the last.
    public func removing(guestPhysicalAddress: UInt64, size: UInt64) throws(GuestMemoryError) -> GuestMemory? {
        guard let i = regions.firstIndex(where: { $0.guestPhysicalAddress == guestPhysicalAddress && $0.size == size }) else {
            throw .noSuchRegion(guestPhysicalAddress: guestPhysicalAddress)
        }
        if regions.count == 1 { return nil }
        var r = regions, m = mappings
        r.remove(at: i)
        m.remove(at: i)
        return GuestMemory(validated: r, mappings: m)
    }

    static func validate(_ regions: [GuestMemoryRegionInfo]) throws(GuestMemoryError) {
        guard !regions.isEmpty else { throw .empty }
        guard regions.count <= maxRegions else { throw .tooManyRegions(regions.count, max: maxRegions) }
        for (i, r) in regions.enumerated() {
            guard r.size > 0 else { throw .zeroSize(region: i) }
            let (_, o1) = r.guestPhysicalAddress.addingReportingOverflow(r.size)
            let (_, o2) = r.frontEndAddress.addingReportingOverflow(r.size)
            let (mapEnd, o3) = r.mmapOffset.addingReportingOverflow(r.size)
            guard !o1, !o2, !o3, mapEnd <= UInt64(Int.max) else { throw .wraps(region: i) }
        }
        for i in regions.indices {
            for j in regions.indices where j < i {
                let a = regions[i], b = regions[j]
                let gpaOverlap = a.guestPhysicalAddress < b.guestPhysicalAddress + b.size
                    && b.guestPhysicalAddress < a.guestPhysicalAddress + a.size
                let vaOverlap = a.frontEndAddress < b.frontEndAddress + b.size
                    && b.frontEndAddress < a.frontEndAddress + a.size
                if gpaOverlap || vaOverlap { throw .overlaps(region: i, other: j) }
            }
        }
    }

    /// Maps one region's file, once it is seen to be a regular file (memfd,
    /// hugetlbfs and tmpfs files are) at least as long as the region needs.
    /// Anything else a front-end might send — a pipe, a socket, a device — is
    /// refused before it is mapped.
    private static func map(_ r: GuestMemoryRegionInfo, file: consuming FileDescriptor, region: Int)
        throws(GuestMemoryError) -> MappedFile
    {
        let fd = file.rawValue
        let status: FileStatus
        do { status = try FileStatus.of(fd) } catch { throw .mapFailed(region: region, error) }
        guard status.kind == .regularFile else { throw .notAFile(region: region, status.kind) }
        // Hugepage-backed descriptors can only be mapped in whole pages of their
        // own size; st_blksize reports that size for hugetlbfs and memfd alike.
        let block = max(status.blockSize, 4096)
        let wanted = r.mmapOffset + r.size
        // A file shorter than the region maps without complaint, and the first
        // access past its end raises SIGBUS: a front-end could kill us with it.
        let fileSize = status.size
        guard fileSize >= wanted else { throw .fileTooShort(region: region, fileSize: fileSize, needed: wanted) }
        // validate() keeps `wanted` within Int.max; rounding up to a block may not.
        guard let length = Int(exactly: (wanted + block - 1) / block * block) else { throw .tooLarge(region: region) }
        // The front-end may still truncate the file (only a memfd sealed with
        // F_SEAL_SHRINK cannot shrink): the mapping survives that (BusErrorRecovery).
        let mapping: MemoryMapping
        do { mapping = try MemoryMapping(fd: fd, length: length, survivingTruncation: true) } catch {
            throw .mapFailed(region: region, error)
        }
        return MappedFile(mapping: mapping, file: file, needed: wanted)
    }

    /// Whether a region's file shrank since it was mapped: an access that
    /// faulted, or a file now shorter than its region (an fstat per region).
    public func damage() -> GuestMemoryDamage? {
        for (i, m) in mappings.enumerated() {
            if m.mapping.hasFaulted { return .faulted(region: i) }
            var st = stat()
            guard (try? syscall("fstat") { fstat(m.file.rawValue, &st) }) != nil else { continue }
            let size = UInt64(max(st.st_size, 0))
            if size < m.needed { return .shrank(region: i, fileSize: size, needed: m.needed) }
        }
        return nil
    }

    /// The host pointer for `length` bytes at guest-physical `address`, or nil
    /// unless the whole range lies inside one region.
    @inlinable
    public func translate(_ address: GuestAddress, length: UInt32) -> UnsafeMutableRawPointer? {
        let start = address.rawValue
        let (end, overflow) = start.addingReportingOverflow(UInt64(length))
        if overflow { return nil }
        var i = 0
        while i < count {
            // SAFETY: i < count, the number of regions init wrote into `table`.
            let r = table[i]
            if start >= r.guestStart && end <= r.guestEnd {
                // SAFETY: start - guestStart < region size, checked just above.
                return r.host + Int(start &- r.guestStart)
            }
            i &+= 1
        }
        return nil
    }

    /// The host pointer for the first piece of `length` bytes at `address` that
    /// one region holds, and that piece's length; callers loop over the pieces
    /// of a buffer that crosses from one region into the next. Nil when
    /// `address` is in no region or the range wraps.
    @inlinable
    public func translatePiece(_ address: GuestAddress, length: UInt32) -> (UnsafeMutableRawPointer, UInt32)? {
        let start = address.rawValue
        let (_, overflow) = start.addingReportingOverflow(UInt64(length))
        if overflow { return nil }
        var i = 0
        while i < count {
            // SAFETY: i < count, the number of regions init wrote into `table`.
            let r = table[i]
            if start >= r.guestStart && start < r.guestEnd {
                let room = r.guestEnd &- start
                let piece = room < UInt64(length) ? UInt32(truncatingIfNeeded: room) : length
                // SAFETY: start - guestStart < region size, checked just above.
                return (r.host + Int(start &- r.guestStart), piece)
            }
            i &+= 1
        }
        return nil
    }

    /// The host pointer for a range given in the front-end's address space (ring addresses).
    @inlinable
    public func translate(_ address: FrontEndAddress, length: UInt64) -> UnsafeMutableRawPointer? {
        let start = address.rawValue
        let (end, overflow) = start.addingReportingOverflow(length)
        if overflow { return nil }
        var i = 0
        while i < count {
            // SAFETY: i < count, the number of regions init wrote into `table`.
            let r = table[i]
            if start >= r.frontEndStart && end <= r.frontEndEnd {
                // SAFETY: start - frontEndStart < region size, checked just above.
                return r.host + Int(start &- r.frontEndStart)
            }
            i &+= 1
        }
        return nil
    }

    /// The guest-physical address of a host pointer into one of the regions, the
    /// reverse of `translate`: a write through a translated pointer marks its
    /// page in the dirty log by this address. Nil for a pointer outside every region.
    @inlinable
    public func guestAddress(ofHost pointer: UnsafeMutableRawPointer) -> GuestAddress? {
        var i = 0
        while i < count {
            // SAFETY: i < count, the number of regions init wrote into `table`.
            let r = table[i]
            if pointer >= r.host {
                // SAFETY: pointer >= r.host (tested above): the distance is non-negative; it is used
                // only after it is checked against the region's size.
                let offset = UInt64(pointer - r.host)
                // No overflow: guestEnd - guestStart is the region's size, checked when it was mapped.
                if offset < r.guestEnd &- r.guestStart { return GuestAddress(r.guestStart &+ offset) }
            }
            i &+= 1
        }
        return nil
    }

    /// The guest-physical address that a front-end address maps to, for tests and diagnostics.
    public func guestAddress(of address: FrontEndAddress) -> GuestAddress? {
        // SAFETY: i < count, the number of regions init wrote into `table`.
        for i in 0..<count where address.rawValue >= table[i].frontEndStart && address.rawValue < table[i].frontEndEnd {
            return GuestAddress(table[i].guestStart + (address.rawValue - table[i].frontEndStart))
        }
        return nil
    }
}
