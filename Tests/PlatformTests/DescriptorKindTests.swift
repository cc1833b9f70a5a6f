import CFerry
import Glibc
import Platform
import XCTest

final class DescriptorKindTests: XCTestCase {
    func testEachKindIsRecognised() throws {
        var ends: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&ends), 0)
        defer { close(ends[0]); close(ends[1]) }
        let (mine, theirs) = try UnixSocket.pair()
        defer { close(mine); close(theirs) }
        let counter = try EventFD.create(nonBlocking: false)
        let file = try SharedMemory(length: 4096, name: "ferry-test-kind")
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(null) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        let signals = signalfd(-1, &noSignals, Int32(SFD_CLOEXEC))
        defer { close(signals) }
        XCTAssertEqual(try DescriptorKind.of(ends[0]), .pipe)
        XCTAssertEqual(try DescriptorKind.of(mine), .socket)
        XCTAssertEqual(try DescriptorKind.of(counter.rawValue), .eventfd)
        XCTAssertEqual(try DescriptorKind.of(file.fd.rawValue), .regularFile)
        XCTAssertEqual(try DescriptorKind.of(null), .characterDevice)
        XCTAssertEqual(try DescriptorKind.of(signals), .anonymous("[signalfd]"))
    }

    /// A blocking eventfd whose counter is 0: a plain read would wait for ever.
    func testDrainingABlockingEventFDReturnsAtOnce() throws {
        let counter = try EventFD.create(nonBlocking: false)
        XCTAssertEqual(EventFD.drain(counter.rawValue), 0)
        EventFD.signal(counter.rawValue)
        EventFD.signal(counter.rawValue)
        XCTAssertEqual(EventFD.drain(counter.rawValue), 2)
        XCTAssertEqual(EventFD.drain(counter.rawValue), 0)
        XCTAssertEqual(fcntl(counter.rawValue, F_GETFL) & O_NONBLOCK, 0, "the file's flags are left as they were")
    }
}
