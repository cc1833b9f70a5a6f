import CFerry
import Glibc
import Platform

public enum DirtyPageLogError: Error, Equatable, CustomStringConvertible {
    case zeroSize
    /// Offset plus size does not fit the address space.
    case wraps(size: UInt64, offset: UInt64)
    case notAFile(DescriptorKind)
    case fileTooShort(fileSize: UInt64, needed: UInt64)
    case mapFailed(SystemError)
    /// The log ends before the highest guest address it must cover.
    case doesNotCover(what: String, end: UInt64, covered: UInt64)

    public var description: String {
        switch self {
        case .zeroSize: "dirty log has size 0"
        case .wraps(let size, let offset):
            "dirty log of \(size) bytes at offset \(offset) runs past the end of the address space"
        case .notAFile(let kind): "dirty log comes with \(kind), not a regular file (memfd)"
        case .fileTooShort(let size, let needed): "dirty log needs \(needed) bytes of its file, which has \(size)"
        case .mapFailed(let e): "dirty log cannot be mapped: \(e)"
        case .doesNotCover(let what, let end, let covered):
            "dirty log covers guest addresses below 0x\(String(covered, radix: 16)), "
                + "\(what) reaches 0x\(String(end, radix: 16))"
        }
    }
}

/// A front-end's dirty-page log during live migration (vhost-user.rst,
/// "Migration"): one bit per 4 KiB page of guest-physical memory, page `p` at
/// bit `p % 8` of byte `p / 8`, from guest address 0. While it is on, every
/// byte Ferry writes into guest memory marks its page, after the write, so the
/// front-end copies that page again. The bits are set with an atomic OR: the
/// front-end reads and clears them while we run.
///
/// Rings of any layout mark through `mark(_:length:)` (a guest-physical range)
/// or `GuestWrites`'s `written(_:count:)` (a host pointer into guest memory).
public final class DirtyPageLog: @unchecked Sendable {
    /// VHOST_LOG_PAGE (vhost-user.rst, "Migration").
    public static let pageSize: UInt64 = 0x1000
    @usableFromInline static let pageShift: UInt64 = 12

    private let mapping: MemoryMapping
    private let file: FileDescriptor
    /// The byte that holds guest page 0.
    @usableFromInline let bits: UnsafeMutableRawPointer
    /// Bytes of log: `8 * byteCount` pages are covered.
    public let byteCount: UInt64

    /// Maps `size` bytes of `file` from `offset` (SET_LOG_BASE's log description),
    /// once the file is seen to be a regular file long enough to hold them. The log owns `file`.
    public init(file: consuming FileDescriptor, size: UInt64, offset: UInt64) throws(DirtyPageLogError) {
        guard size > 0 else { throw .zeroSize }
        let (end, overflow) = offset.addingReportingOverflow(size)
        guard !overflow, let length = Int(exactly: end), length <= Int.max - 4096 else {
            throw .wraps(size: size, offset: offset)
        }
        let fd = file.rawValue
        let status: FileStatus
        do { status = try FileStatus.of(fd) } catch { throw .mapFailed(error) }
        guard status.kind == .regularFile else { throw .notAFile(status.kind) }
        // A file shorter than the log would raise SIGBUS at the first mark past its end.
        let fileSize = status.size
        guard fileSize >= end else { throw .fileTooShort(fileSize: fileSize, needed: end) }
        do {
            // From file offset 0: mmap wants a page-aligned offset, the log's need not be.
            // The front-end may still truncate it: the mapping survives that (BusErrorRecovery).
            mapping = try MemoryMapping(fd: fd, length: length, survivingTruncation: true)
        } catch {
            throw .mapFailed(error)
        }
        self.file = file
        // SAFETY: offset + size == length, the mapped length, so the log lies inside the mapping.
        bits = mapping.base + Int(offset)
        byteCount = size
    }

    /// As `init(file:size:offset:)` from a descriptor the caller keeps (tests, benchmarks).
    public convenience init(fd: Int32, size: UInt64, offset: UInt64) throws(DirtyPageLogError) {
        let file: FileDescriptor
        do { file = try FileDescriptor.duplicating(fd) } catch { throw .mapFailed(error) }
        try self.init(file: file, size: size, offset: offset)
    }

    /// The first guest address the log does not cover.
    public var coveredEnd: UInt64 {
        let (pages, o1) = byteCount.multipliedReportingOverflow(by: 8)
        let (end, o2) = pages.multipliedReportingOverflow(by: Self.pageSize)
        return o1 || o2 ? .max : end
    }

    /// Whether every page of `[start, start + length)` has its bit in the log.
    public func covers(_ start: UInt64, length: UInt64) -> Bool {
        guard length > 0 else { return true }
        let (end, overflow) = start.addingReportingOverflow(length)
        return !overflow && end <= coveredEnd
    }

    /// Marks every page `length` bytes at guest-physical `address` touch. A page
    /// past the log is left alone: the log was checked to cover guest memory and
    /// the logged rings when it arrived, so only a front-end that changed either
    /// since could ask for one, and it may not make us write outside its log.
    @inlinable
    public func mark(_ address: GuestAddress, length: Int) {
        guard length > 0 else { return }
        let (last, overflow) = address.rawValue.addingReportingOverflow(UInt64(length) &- 1)
        if overflow { return }
        var page = address.rawValue &>> Self.pageShift
        let lastPage = last &>> Self.pageShift
        while page <= lastPage {
            let byte = page &>> 3
            if byte >= byteCount { return }
            // SAFETY: byte < byteCount, the log's mapped length from `bits`.
            ferry_fetch_or_release_u8(bits + Int(byte), UInt8(1) &<< UInt8(truncatingIfNeeded: page & 7))
            page &+= 1
        }
    }

    /// Whether guest page `page`'s bit is set (tests, diagnostics).
    public func isMarked(page: UInt64) -> Bool {
        let byte = page >> 3
        guard byte < byteCount else { return false }
        // SAFETY: byte < byteCount (the guard above), the log's mapped length.
        return bits.load(fromByteOffset: Int(byte), as: UInt8.self) & (1 << UInt8(page & 7)) != 0
    }
}
