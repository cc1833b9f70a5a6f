import Glibc
import Logging
import Packets
import Platform
import Ports
import XCTest

@testable import Engine
@testable import Telemetry

/// A capture end to end without threads: the test runs the worker's passes
/// and the control thread's `service` itself, and reads the pcap stream from
/// the other end of a socketpair.
final class CaptureServiceTests: XCTestCase {
    func makeSwitch() throws -> Switch { try threePortSwitch(generating: 100) }

    private func readAll(_ fd: Int32) -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n <= 0 { return out }
            out += buffer[0..<n]
        }
    }

    /// Record headers of a pcap stream: (captured, original) lengths, and the frames.
    private func records(_ stream: [UInt8]) -> [(Int, Int, [UInt8])] {
        var out: [(Int, Int, [UInt8])] = []
        var i = 24
        func u32(_ at: Int) -> Int { Int(stream[at]) | Int(stream[at + 1]) << 8 | Int(stream[at + 2]) << 16 | Int(stream[at + 3]) << 24 }
        while i + 16 <= stream.count {
            let captured = u32(i + 8)
            out.append((captured, u32(i + 12), Array(stream[(i + 16)..<(i + 16 + captured)])))
            i += 16 + captured
        }
        return out
    }

    func testATrunkCaptureEndsAtItsCountWithTaggedFrames() throws {
        let sw = try makeSwitch()
        let service = CaptureService(switch: sw, logger: Logger(label: "test"))
        let (mine, theirs) = try UnixSocket.pair()
        defer { close(theirs) }
        try service.start(connection: DescriptorSlot(FileDescriptor(owning: mine)),
                          request: CaptureRequest(portName: "t", receive: true, transmit: true, count: 5, snapLength: 30))
        XCTAssertEqual(sw.bridge.capture.transmittingPorts, [2])
        XCTAssertEqual(sw.bridge.capture.receivingPorts, [2])
        let batch = PacketBatch(capacity: 256)
        while sw.workers[0].forwardOnce(batch) > 0 {}
        service.service(now: 0)
        XCTAssertEqual(service.captureCount, 0, "the capture did not end at its count")
        XCTAssertEqual(sw.bridge.capture.transmittingPorts, [])
        let stream = readAll(theirs)
        XCTAssertEqual(Array(stream[0..<4]), [0xD4, 0xC3, 0xB2, 0xA1])
        XCTAssertEqual(Array(stream[16..<20]), [30, 0, 0, 0])
        let frames = records(stream)
        XCTAssertEqual(frames.count, 5)
        for (captured, original, bytes) in frames {
            XCTAssertEqual(captured, 30)
            XCTAssertEqual(original, 68, "64 bytes and the 802.1Q tag the trunk carries")
            XCTAssertEqual(Array(bytes[12..<16]), [0x81, 0x00, 0x00, 0x01])
        }
        // The service closed its end: the reader sees the end of the stream.
        var byte: UInt8 = 0
        XCTAssertEqual(recv(theirs, &byte, 1, Int32(MSG_DONTWAIT)), 0)
    }

    func testAClientThatGoesAwayEndsItsCapture() throws {
        let sw = try makeSwitch()
        let service = CaptureService(switch: sw, logger: Logger(label: "test"))
        let (mine, theirs) = try UnixSocket.pair()
        try service.start(connection: DescriptorSlot(FileDescriptor(owning: mine)),
                          request: CaptureRequest(portName: "g", receive: true, transmit: false, count: nil,
                                                  snapLength: 65535))
        XCTAssertEqual(service.captureCount, 1)
        close(theirs)
        service.service(now: 0)
        XCTAssertEqual(service.captureCount, 0)
        XCTAssertEqual(sw.bridge.capture.receivingPorts, [])
    }

    func testRefusals() throws {
        let sw = try makeSwitch()
        let service = CaptureService(switch: sw, logger: Logger(label: "test"))
        XCTAssertThrowsError(try service.start(connection: DescriptorSlot(),
                                               request: CaptureRequest(portName: "nope", receive: true, transmit: true,
                                                                       count: nil, snapLength: 100))) {
            XCTAssertEqual(($0 as? CaptureRefusal)?.message, "no port is named 'nope'")
        }
        var pairs: [(Int32, Int32)] = []
        defer { service.close(); pairs.forEach { close($0.1) } }
        for _ in 0..<CaptureService.maxCaptures {
            let pair = try UnixSocket.pair()
            pairs.append(pair)
            try service.start(connection: DescriptorSlot(FileDescriptor(owning: pair.0)),
                              request: CaptureRequest(portName: "s", receive: true, transmit: true, count: nil,
                                                      snapLength: 100))
        }
        XCTAssertThrowsError(try service.start(connection: DescriptorSlot(),
                                               request: CaptureRequest(portName: "s", receive: true, transmit: true,
                                                                       count: nil, snapLength: 100))) {
            XCTAssertEqual(($0 as? CaptureRefusal)?.message, "16 captures are running: end one first")
        }
    }
}
