import Glibc
import Model
import Platform
import XCTest

/// The UDP sockets of a tunnel's segmented sends: distinct ports of the
/// dynamic range, a port in use passed over, all closed with their owner.
final class FlowSendersTests: XCTestCase {
    let loopback = InternetAddress("127.0.0.1")!

    /// A UDP socket bound to 127.0.0.1:`port`, or -1 when the port is taken.
    private func occupy(_ port: UInt16) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if bound != 0 {
            close(fd)
            return -1
        }
        return fd
    }

    func testAPortInUseIsPassedOverAndEveryPortIsInTheDynamicRange() throws {
        // A port nobody else holds now, held by this test while the senders bind.
        var first: UInt16 = 61_000
        var held = occupy(first)
        while held < 0 && first < 62_000 {
            first += 7
            held = occupy(first)
        }
        XCTAssertGreaterThanOrEqual(held, 0, "no free port to occupy")
        defer { close(held) }
        let senders = try FlowSenders(local: loopback, count: 4, firstTried: first, sendBuffer: 1 << 16)
        XCTAssertEqual(senders.descriptors.count, 4)
        XCTAssertEqual(Set(senders.ports).count, 4)
        XCTAssertFalse(senders.ports.contains(first), "the port in use is passed over: \(senders.ports)")
        XCTAssertTrue(senders.ports.allSatisfy { $0 > first }, "\(senders.ports)")
    }

    func testTheLastPortsOfTheRangeWrapAroundToItsStart() throws {
        let senders = try FlowSenders(local: loopback, count: 3, firstTried: 65_535, sendBuffer: 1 << 16)
        XCTAssertTrue(senders.ports.allSatisfy { $0 >= 49_152 }, "\(senders.ports)")
        XCTAssertEqual(Set(senders.ports).count, 3)
    }

    func testTheSocketsCloseWithTheirOwner() throws {
        var senders: FlowSenders? = try FlowSenders(local: loopback, count: 2, firstTried: 60_100, sendBuffer: 1 << 16)
        let descriptors = senders!.descriptors
        senders = nil
        for fd in descriptors { XCTAssertEqual(fcntl(fd, F_GETFD), -1, "descriptor \(fd) still open") }
    }
}
