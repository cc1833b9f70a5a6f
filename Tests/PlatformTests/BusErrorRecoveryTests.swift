import Glibc
import Platform
import XCTest

/// A file truncated under a mapping raises SIGBUS at the next access past its
/// new end; a watched mapping survives that with zeros and a fault flag.
final class BusErrorRecoveryTests: XCTestCase {
    func testAnAccessPastATruncatedFilesEndReadsZerosAndIsReported() throws {
        let file = try SharedMemory(length: 1 << 20, name: "ferry-test-shrinks")
        let mapping = try MemoryMapping(fd: file.fd.rawValue, length: 1 << 20, survivingTruncation: true)
        mapping.base.storeBytes(of: 0xA5, toByteOffset: 512 << 10, as: UInt8.self)
        XCTAssertFalse(mapping.hasFaulted)
        XCTAssertEqual(ftruncate(file.fd.rawValue, 4096), 0)
        // Without the handler this load kills the test process.
        XCTAssertEqual(mapping.base.load(fromByteOffset: 512 << 10, as: UInt8.self), 0)
        XCTAssertTrue(mapping.hasFaulted)
        // The whole range was replaced; it stays usable memory until unmapped.
        mapping.base.storeBytes(of: 7, toByteOffset: 0, as: UInt8.self)
        XCTAssertEqual(mapping.base.load(fromByteOffset: 0, as: UInt8.self), 7)
    }

    func testAMappingThatNeverFaultedSaysSoAndOthersAreNotTouched() throws {
        let shrinking = try SharedMemory(length: 1 << 16, name: "ferry-test-shrinks")
        let steady = try SharedMemory(length: 1 << 16, name: "ferry-test-steady")
        let a = try MemoryMapping(fd: shrinking.fd.rawValue, length: 1 << 16, survivingTruncation: true)
        let b = try MemoryMapping(fd: steady.fd.rawValue, length: 1 << 16, survivingTruncation: true)
        steady.base.storeBytes(of: 0x5A, toByteOffset: 40_000, as: UInt8.self)
        XCTAssertEqual(ftruncate(shrinking.fd.rawValue, 0), 0)
        XCTAssertEqual(a.base.load(fromByteOffset: 40_000, as: UInt8.self), 0)
        XCTAssertTrue(a.hasFaulted)
        XCTAssertFalse(b.hasFaulted)
        XCTAssertEqual(b.base.load(fromByteOffset: 40_000, as: UInt8.self), 0x5A, "the other file's mapping is still shared")
    }
}
