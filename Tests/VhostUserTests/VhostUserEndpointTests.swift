import Glibc
import Platform
import TestSupport
import VhostUser
import Virtio
import XCTest

/// The endpoint over a real unix socket: framing, descriptors, replies, reconnects.
final class VhostUserEndpointTests: XCTestCase {
    var path = ""

    override func setUp() {
        path = "/tmp/ferry-endpoint-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
    }

    override func tearDown() { unlink(path) }

    func read(_ fd: Int32, count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + got, count - got) }
            if n <= 0 { break }
            got += n
        }
        return Array(bytes[0..<got])
    }

    func testMessagesSentBackToBackKeepTheirOwnDescriptors() throws {
        let log = CapturedLog()
        let device = VhostDevice(name: "e0", logger: log.logger)
        let endpoint = try VhostUserEndpoint(path: path, mode: .server, device: device, logger: log.logger)
        let client = try UnixSocket.connect(path: path)
        let kick = try EventFD.create()
        // Three messages, the last with a descriptor, queued before the endpoint reads:
        // one recvmsg would return all three and hand the descriptor to the first.
        try UnixSocket.send(client.rawValue, bytes: MessageEncoder.request(.setOwner))
        try UnixSocket.send(client.rawValue, bytes: MessageEncoder.request(.setVringNum, payload: .vringState(index: 1, num: 256)))
        try UnixSocket.send(client.rawValue, bytes: MessageEncoder.request(.setVringKick, payload: .vringFile(index: 1, hasFD: true)),
                            fds: [kick.rawValue])
        try UnixSocket.send(client.rawValue, bytes: MessageEncoder.request(.getQueueNum))
        endpoint.service(now: 0)
        endpoint.service(now: 0)
        XCTAssertEqual(read(client.rawValue, count: 20), MessageEncoder.reply(to: .getQueueNum, payload: .u64(1)))
        XCTAssertTrue(endpoint.isConnected)
        XCTAssertGreaterThanOrEqual(device.queues[1].kickFD, 0, "the kick descriptor reached SET_VRING_KICK")
        XCTAssertFalse(log.lines.contains { $0.contains("descriptor") && $0.contains("error") }, "\(log.lines)")
    }

    func testGarbageClosesTheConnectionAndTheNextFrontEndIsServed() throws {
        let log = CapturedLog()
        let device = VhostDevice(name: "e1", logger: log.logger)
        let endpoint = try VhostUserEndpoint(path: path, mode: .server, device: device, logger: log.logger)
        let bad = try UnixSocket.connect(path: path)
        try UnixSocket.send(bad.rawValue, bytes: [UInt8](repeating: 0xa5, count: 64))
        endpoint.service(now: 0)
        endpoint.service(now: 0)
        XCTAssertFalse(endpoint.isConnected)
        XCTAssertEqual(read(bad.rawValue, count: 1), [], "the hostile connection was closed")
        let good = try UnixSocket.connect(path: path)
        try UnixSocket.send(good.rawValue, bytes: MessageEncoder.request(.getFeatures))
        endpoint.service(now: 0)
        endpoint.service(now: 0)
        XCTAssertEqual(read(good.rawValue, count: 20),
                       MessageEncoder.reply(to: .getFeatures, payload: .u64(device.offeredFeatures)))
    }

    func testAnOversizedMessageClosesTheConnection() throws {
        let log = CapturedLog()
        let device = VhostDevice(name: "e2", logger: log.logger)
        let endpoint = try VhostUserEndpoint(path: path, mode: .server, device: device, logger: log.logger)
        let client = try UnixSocket.connect(path: path)
        try UnixSocket.send(client.rawValue, bytes: MessageEncoder.frame(requestNumber: 5, flags: 1, payload: []) .prefix(8)
            + [0xff, 0xff, 0xff, 0x7f])
        endpoint.service(now: 0)
        endpoint.service(now: 0)
        XCTAssertFalse(endpoint.isConnected)
        XCTAssertTrue(log.lines.contains { $0.contains("4096") }, "\(log.lines)")
    }

    func testClientModeRetriesUntilTheFrontEndListens() throws {
        let log = CapturedLog()
        let device = VhostDevice(name: "e3", logger: log.logger)
        let endpoint = try VhostUserEndpoint(path: path, mode: .client, device: device, logger: log.logger)
        endpoint.service(now: 1)
        XCTAssertFalse(endpoint.isConnected)
        XCTAssertEqual(endpoint.timeout(now: 1) ?? -1, 0.1, accuracy: 0.001)
        let listener = try UnixSocket.listen(path: path)
        endpoint.service(now: 1.05)
        XCTAssertFalse(endpoint.isConnected, "backoff is honoured")
        endpoint.service(now: 1.2)
        XCTAssertTrue(endpoint.isConnected)
        let peer = try UnixSocket.accept(listener.rawValue)?.release()
        XCTAssertNotNil(peer)
        if let peer { close(peer) }
        endpoint.service(now: 2)
        XCTAssertFalse(endpoint.isConnected, "the front-end went away")
        XCTAssertNotNil(endpoint.timeout(now: 2), "and the endpoint reconnects")
    }
}
