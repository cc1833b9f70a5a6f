import Glibc
import Platform
import TestSupport
import Virtio
import XCTest

final class GuestMemoryTests: XCTestCase {
    private let mib: UInt64 = 1 << 20

    private func region(_ gpa: UInt64, _ size: UInt64, frontEnd: UInt64, offset: UInt64 = 0) -> GuestMemoryRegionInfo {
        GuestMemoryRegionInfo(guestPhysicalAddress: gpa, size: size, frontEndAddress: frontEnd, mmapOffset: offset)
    }

    private func expectError(_ expected: GuestMemoryError, _ body: () throws -> Void,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) {
            XCTAssertEqual($0 as? GuestMemoryError, expected, file: file, line: line)
        }
    }

    // MARK: Translation

    func testTranslateInsideOutsideAndAtEdges() throws {
        let ram = try GuestRAM.oneRegion()
        let mem = try ram.makeGuestMemory()
        let base = ram.base, size = ram.regions[0].size

        let first = try XCTUnwrap(mem.translate(GuestAddress(base), length: 1))
        XCTAssertEqual(mem.translate(GuestAddress(base + 100), length: 16), first + 100)
        XCTAssertEqual(mem.translate(GuestAddress(base), length: UInt32(size)), first, "the whole region")
        XCTAssertEqual(mem.translate(GuestAddress(base + size - 1), length: 1), first + Int(size - 1), "last byte")
        XCTAssertEqual(mem.translate(GuestAddress(base + size - 16), length: 16), first + Int(size - 16))

        XCTAssertNil(mem.translate(GuestAddress(base + size - 15), length: 16), "runs one byte past the end")
        XCTAssertNil(mem.translate(GuestAddress(base), length: UInt32(size) + 1))
        XCTAssertNil(mem.translate(GuestAddress(base + size), length: 1), "first byte after the region")
        XCTAssertNil(mem.translate(GuestAddress(base - 1), length: 1), "last byte before the region")
        XCTAssertNil(mem.translate(GuestAddress(base - 1), length: 2), "straddles the start")
        XCTAssertNil(mem.translate(GuestAddress(0), length: 64))
        XCTAssertNil(mem.translate(GuestAddress(base), length: .max))

        // The back-end's mapping and the driver's see the same bytes.
        ram.write([1, 2, 3, 4], at: base + 4096)
        let p = try XCTUnwrap(mem.translate(GuestAddress(base + 4096), length: 4))
        XCTAssertEqual(Array(UnsafeRawBufferPointer(start: p, count: 4)), [1, 2, 3, 4])
        p.storeBytes(of: 0xAB, toByteOffset: 1, as: UInt8.self)
        XCTAssertEqual(ram.read(base + 4096, count: 4), [1, 0xAB, 3, 4])
    }

    func testTranslateRejectsRangesThatWrapTheAddressSpace() throws {
        // A region that ends exactly at 2^64 - 1 (its exclusive end is UInt64.max).
        let size = 4 * mib
        let top = UInt64.max - size
        let ram = try GuestRAM(size: Int(size), regions: [region(top, size, frontEnd: UInt64.max - size)])
        let mem = try ram.makeGuestMemory()

        XCTAssertNotNil(mem.translate(GuestAddress(UInt64.max - 1), length: 1), "last byte of the region")
        XCTAssertNil(mem.translate(GuestAddress(UInt64.max - 1), length: 2), "end would be 2^64")
        XCTAssertNil(mem.translate(GuestAddress(UInt64.max - 10), length: 100))
        XCTAssertNil(mem.translate(GuestAddress(UInt64.max), length: .max))
        XCTAssertNil(mem.translatePiece(GuestAddress(UInt64.max - 10), length: 100))
        XCTAssertNil(mem.translate(FrontEndAddress(UInt64.max - 4), length: 16))
        XCTAssertNil(mem.translate(FrontEndAddress(top), length: .max))

        // Far from the top, a wrapping range is still refused rather than truncated.
        let low = try GuestRAM.oneRegion()
        let lowMem = try low.makeGuestMemory()
        XCTAssertNil(lowMem.translate(GuestAddress(UInt64.max - 10), length: 100))
        XCTAssertNil(lowMem.translatePiece(GuestAddress(UInt64.max - 10), length: 100))
    }

    func testZeroLength() throws {
        let ram = try GuestRAM.oneRegion()
        let mem = try ram.makeGuestMemory()
        let first = try XCTUnwrap(mem.translate(GuestAddress(ram.base), length: 1))
        XCTAssertEqual(mem.translate(GuestAddress(ram.base + 10), length: 0), first + 10)
        XCTAssertNil(mem.translate(GuestAddress(0x10), length: 0), "an empty range outside memory is still outside")
        XCTAssertNil(mem.translate(GuestAddress(ram.base + 8 * mib), length: 0))
        XCTAssertNil(mem.translatePiece(GuestAddress(0x10), length: 0))
    }

    func testFrontEndAddressesTranslatePerRegion() throws {
        let ram = try GuestRAM.twoRegions()
        let mem = try ram.makeGuestMemory()
        let half = ram.regions[0].size
        for r in ram.regions {
            let viaGuest = try XCTUnwrap(mem.translate(GuestAddress(r.guestPhysicalAddress + 64), length: 16))
            XCTAssertEqual(mem.translate(FrontEndAddress(r.frontEndAddress + 64), length: 16), viaGuest)
            XCTAssertEqual(mem.guestAddress(of: FrontEndAddress(r.frontEndAddress + 64)), GuestAddress(r.guestPhysicalAddress + 64))
        }
        // Adjacent in guest-physical space is not adjacent in the front-end's.
        XCTAssertNil(mem.translate(FrontEndAddress(ram.regions[0].frontEndAddress + half - 8), length: 16))
        XCTAssertNil(mem.translate(FrontEndAddress(0x1000), length: 16))
        XCTAssertNil(mem.guestAddress(of: FrontEndAddress(0x1000)))
    }

    func testTranslatePieceAcrossTwoAdjacentRegions() throws {
        let ram = try GuestRAM.twoRegions()
        let mem = try ram.makeGuestMemory()
        let boundary = ram.regions[1].guestPhysicalAddress
        let bytes = (0..<32).map { UInt8($0) }
        ram.write(bytes, at: boundary - 8)

        XCTAssertNil(mem.translate(GuestAddress(boundary - 8), length: 32), "one region does not hold it")

        let (p1, n1) = try XCTUnwrap(mem.translatePiece(GuestAddress(boundary - 8), length: 32))
        XCTAssertEqual(n1, 8, "the first piece stops at the end of the first region")
        let (p2, n2) = try XCTUnwrap(mem.translatePiece(GuestAddress(boundary), length: 24))
        XCTAssertEqual(n2, 24)
        let joined = Array(UnsafeRawBufferPointer(start: p1, count: Int(n1))) + Array(UnsafeRawBufferPointer(start: p2, count: Int(n2)))
        XCTAssertEqual(joined, bytes)

        // Wholly inside one region: a single piece of the full length.
        let (_, whole) = try XCTUnwrap(mem.translatePiece(GuestAddress(boundary + 100), length: 4096))
        XCTAssertEqual(whole, 4096)
        // Past the end of the last region: the piece is cut, and the next one is refused.
        let end = boundary + ram.regions[1].size
        let (_, tail) = try XCTUnwrap(mem.translatePiece(GuestAddress(end - 4), length: 16))
        XCTAssertEqual(tail, 4)
        XCTAssertNil(mem.translatePiece(GuestAddress(end), length: 12))
    }

    // MARK: Validation

    func testRegionTablesAreValidated() throws {
        let shm = try SharedMemory(length: Int(4 * mib), name: "ferry-test-validate")
        let fd = shm.fd.rawValue
        let good = region(0x4000_0000, mib, frontEnd: 0x7f00_0000_0000)

        expectError(.empty) { _ = try GuestMemory(regions: [], fds: []) }
        expectError(.zeroSize(region: 1)) {
            _ = try GuestMemory(regions: [good, region(0x8000_0000, 0, frontEnd: 0x7e00_0000_0000)], fds: [fd, fd])
        }
        expectError(.wraps(region: 0)) {
            _ = try GuestMemory(regions: [region(UInt64.max - mib + 1, mib, frontEnd: 0)], fds: [fd])
        }
        expectError(.wraps(region: 0)) {
            _ = try GuestMemory(regions: [region(0, mib, frontEnd: UInt64.max - 4095)], fds: [fd])
        }
        expectError(.wraps(region: 0)) {
            _ = try GuestMemory(regions: [region(0, mib, frontEnd: 0, offset: UInt64.max - 10)], fds: [fd])
        }
        expectError(.wraps(region: 0)) {
            _ = try GuestMemory(regions: [region(0, mib, frontEnd: 0, offset: UInt64(Int.max))], fds: [fd])
        }
        // Overlapping guest-physical ranges, distinct front-end ranges.
        expectError(.overlaps(region: 1, other: 0)) {
            _ = try GuestMemory(regions: [good, region(0x4000_0000 + mib - 1, mib, frontEnd: 0x7e00_0000_0000)], fds: [fd, fd])
        }
        // One region inside the other.
        expectError(.overlaps(region: 1, other: 0)) {
            _ = try GuestMemory(regions: [good, region(0x4000_1000, 4096, frontEnd: 0x7e00_0000_0000)], fds: [fd, fd])
        }
        // Distinct guest-physical ranges, overlapping front-end ranges.
        expectError(.overlaps(region: 1, other: 0)) {
            _ = try GuestMemory(regions: [good, region(0x8000_0000, mib, frontEnd: 0x7f00_0000_0000 + mib / 2)], fds: [fd, fd])
        }
        expectError(.overlaps(region: 2, other: 0)) {
            _ = try GuestMemory(regions: [good, region(0x8000_0000, mib, frontEnd: 0x7e00_0000_0000),
                                          region(0x3ff0_0000, 2 * mib, frontEnd: 0x7d00_0000_0000)], fds: [fd, fd, fd])
        }
        let many = (0..<33).map { region(UInt64($0) * mib, 4096, frontEnd: 0x7f00_0000_0000 + UInt64($0) * mib) }
        expectError(.tooManyRegions(33, max: GuestMemory.maxRegions)) {
            _ = try GuestMemory(regions: many, fds: many.map { _ in fd })
        }

        // Touching ranges (end of one = start of the next) are not an overlap.
        let touching = try GuestMemory(regions: [good, region(0x4000_0000 + mib, mib, frontEnd: 0x7f00_0000_0000 + mib, offset: mib)],
                                       fds: [fd, fd])
        XCTAssertEqual(touching.regions.count, 2)
    }

    /// A front-end may send any descriptor as a region's file: only a regular
    /// file (memfd, hugetlbfs, tmpfs) is mapped; the rest is refused by kind.
    func testADescriptorThatIsNotAFileIsRefusedByKind() throws {
        var pipeEnds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&pipeEnds), 0)
        defer { close(pipeEnds[0]); close(pipeEnds[1]) }
        let (socketEnd, otherEnd) = try UnixSocket.pair()
        defer { close(socketEnd); close(otherEnd) }
        let counter = try EventFD.create()
        let zero = open("/dev/zero", O_RDWR | O_CLOEXEC)
        XCTAssertGreaterThanOrEqual(zero, 0)
        defer { close(zero) }
        let cases: [(Int32, DescriptorKind)] = [(pipeEnds[0], .pipe), (socketEnd, .socket), (counter.rawValue, .eventfd),
                                                (zero, .characterDevice)]
        for (fd, kind) in cases {
            expectError(.notAFile(region: 0, kind)) {
                _ = try GuestMemory(regions: [region(0, mib, frontEnd: 0)], fds: [fd])
            }
        }
    }

    /// A file shorter than the region it is said to back maps without complaint
    /// but raises SIGBUS on the first access past its end: the table is refused.
    func testARegionLargerThanItsFileIsRefused() throws {
        let ram = try GuestRAM(size: Int(mib), regions: [region(0x4000_0000, 2 * mib, frontEnd: 0x7f00_0000_0000)])
        expectError(.fileTooShort(region: 0, fileSize: mib, needed: 2 * mib)) { _ = try ram.makeGuestMemory() }
        let offset = try GuestRAM(size: Int(mib), regions: [region(0x4000_0000, mib, frontEnd: 0x7f00_0000_0000, offset: 4096)])
        XCTAssertThrowsError(try offset.makeGuestMemory())
    }

    /// A region just under Int.max bytes passes validation; mapping it must
    /// fail with an error, not trap while rounding its length up to a page.
    func testAHugeRegionFailsToMapWithoutTrapping() throws {
        // A sparse memfd as long as a region may be: it costs no memory.
        let file = try SharedMemory(length: 4096, name: "ferry-test-huge")
        XCTAssertEqual(ftruncate(file.fd.rawValue, off_t(Int.max)), 0)
        do {
            _ = try GuestMemory(regions: [region(0, UInt64(Int.max), frontEnd: 0)], fds: [file.fd.rawValue])
            XCTFail("mapping 2^63 bytes cannot succeed")
        } catch {
            guard case .tooLarge(region: 0) = error else { return XCTFail("\(error)") }
        }
    }

    // MARK: Adding and removing regions

    func testAddingAndRemovingRegions() throws {
        let shm = try SharedMemory(length: Int(4 * mib), name: "ferry-test-hotplug")
        let fd = shm.fd.rawValue
        let a = region(0x4000_0000, mib, frontEnd: 0x7f00_0000_0000)
        let b = region(0x8000_0000, mib, frontEnd: 0x7e00_0000_0000, offset: 2 * mib)
        shm.base.storeBytes(of: 0xA1, toByteOffset: 16, as: UInt8.self)
        shm.base.storeBytes(of: 0xB2, toByteOffset: Int(2 * mib) + 16, as: UInt8.self)

        let one = try GuestMemory(regions: [a], fds: [fd])
        XCTAssertNil(one.translate(GuestAddress(b.guestPhysicalAddress), length: 1))

        let two = try one.adding(b, fd: fd)
        XCTAssertEqual(two.regions, [a, b])
        let pa = try XCTUnwrap(two.translate(GuestAddress(a.guestPhysicalAddress + 16), length: 1))
        let pb = try XCTUnwrap(two.translate(GuestAddress(b.guestPhysicalAddress + 16), length: 1))
        XCTAssertEqual(pa.load(as: UInt8.self), 0xA1)
        XCTAssertEqual(pb.load(as: UInt8.self), 0xB2, "the new region maps from its own offset")
        XCTAssertNotNil(two.translate(FrontEndAddress(b.frontEndAddress), length: 64))
        XCTAssertNil(one.translate(GuestAddress(b.guestPhysicalAddress), length: 1), "the old table is unchanged")

        expectError(.overlaps(region: 2, other: 0)) {
            _ = try two.adding(region(0x4000_0000 + 4096, 4096, frontEnd: 0x7d00_0000_0000), fd: fd)
        }
        expectError(.overlaps(region: 2, other: 1)) {
            _ = try two.adding(region(0x1_0000_0000, 4096, frontEnd: 0x7e00_0000_0000 + 4096), fd: fd)
        }
        expectError(.zeroSize(region: 2)) { _ = try two.adding(region(0x1_0000_0000, 0, frontEnd: 0x1000), fd: fd) }

        expectError(.noSuchRegion(guestPhysicalAddress: 0x1234_0000)) {
            _ = try two.removing(guestPhysicalAddress: 0x1234_0000, size: mib)
        }
        expectError(.noSuchRegion(guestPhysicalAddress: a.guestPhysicalAddress)) {
            _ = try two.removing(guestPhysicalAddress: a.guestPhysicalAddress, size: 2 * mib)
        }

        let onlyB = try XCTUnwrap(try two.removing(guestPhysicalAddress: a.guestPhysicalAddress, size: a.size))
        XCTAssertEqual(onlyB.regions, [b])
        XCTAssertNil(onlyB.translate(GuestAddress(a.guestPhysicalAddress + 16), length: 1))
        XCTAssertEqual(onlyB.translate(GuestAddress(b.guestPhysicalAddress + 16), length: 1)?.load(as: UInt8.self), 0xB2)
        XCTAssertEqual(pa.load(as: UInt8.self), 0xA1, "the table that still has the region keeps it mapped")

        XCTAssertNil(try onlyB.removing(guestPhysicalAddress: b.guestPhysicalAddress, size: b.size), "removing the last region")
    }
}

extension GuestMemoryTests {
    /// The front-end truncates its memory file after the table was mapped:
    /// the memory says so before any access, and an access reads zeros.
    func testAFileThatShrinksAfterMappingIsReportedAndSurvived() throws {
        let ram = try GuestRAM.oneRegion(size: Int(4 * mib))
        let memory = try ram.makeGuestMemory()
        XCTAssertNil(memory.damage())
        XCTAssertEqual(ftruncate(ram.shared.fd.rawValue, off_t(mib)), 0)
        XCTAssertEqual(memory.damage(), .shrank(region: 0, fileSize: mib, needed: 4 * mib))
        let past = try XCTUnwrap(memory.translate(GuestAddress(ram.base + 3 * mib), length: 8))
        XCTAssertEqual(past.load(as: UInt64.self), 0)
        XCTAssertEqual(memory.damage(), .faulted(region: 0))
        XCTAssertTrue("\(memory.damage()!)".contains("shrank"))
    }
}
