import Glibc
import Packets
import Platform
import TestSupport
import VhostUser
import Virtio
import XCTest

@testable import Ports

/// Ferry as a driver (`virtio-user`) against Ferry's own vhost-user back-end over a real
/// socket, and against back-ends that lie: in their replies, and in the rings.
final class VirtioUserPortTests: XCTestCase {
    var path = ""

    override func setUp() {
        path = "/tmp/ferry-virtio-user-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
    }

    override func tearDown() { unlink(path) }

    /// A vhost-user device listening on `path`, and a virtio-user port connected to it, served until both rings run.
    func connected(_ log: CapturedLog, queueSize: UInt16 = 256) throws -> (VhostDevice, VhostUserEndpoint, VirtioUserPort) {
        let device = VhostDevice(name: "dut", logger: log.logger)
        let endpoint = try VhostUserEndpoint(path: path, mode: .server, device: device, logger: log.logger)
        let port = try VirtioUserPort(path: path, server: false, queueSize: queueSize, name: "vu",
                                      gate: UngatedDataPath(), logger: log.logger)
        serve(port, endpoint) { device.receiveQueue(0).isRunning && device.transmitQueue(0).isRunning && port.isRunning }
        XCTAssertTrue(port.isRunning, "\(log.lines)")
        XCTAssertTrue(device.receiveQueue(0).isRunning && device.transmitQueue(0).isRunning, "\(log.lines)")
        return (device, endpoint, port)
    }

    func serve(_ port: VirtioUserPort, _ endpoint: VhostUserEndpoint, until done: () -> Bool) {
        for _ in 0..<500 where !done() {
            port.service(now: MonotonicClock.now())
            endpoint.service(now: MonotonicClock.now())
            usleep(1000)
        }
    }

    func testFramesCrossBothWaysExactlyAndTheRingsWrap() throws {
        let log = CapturedLog()
        let (device, _, port) = try connected(log, queueSize: 64)
        XCTAssertEqual(port.state, "running")
        XCTAssertTrue(log.lines.contains { $0.contains("every set-up message acknowledged") }, "\(log.lines)")
        let counters = QueueCounters()
        let store = FrameStore()
        let batch = PacketBatch(capacity: 48)
        // 48 a burst through 64-entry rings: every burst after the first wraps somewhere.
        for round in 0..<10 {
            let frames = (0..<48).map { ethernetFrame(length: 60 + (round * 48 + $0) % 1400, seed: UInt8(truncatingIfNeeded: $0)) }
            // Ferry -> back-end.
            store.reset()
            batch.reset()
            for f in frames { store.append(f, to: batch) }
            port.push(queue: 0, from: batch)
            batch.reset()
            XCTAssertEqual(device.transmitQueue(0).pull(into: batch, counters: counters), 48)
            XCTAssertEqual((0..<batch.count).map { batch.frameBytes($0) }, frames, "round \(round) to the back-end")
            device.transmitQueue(0).release()
            // Back-end -> Ferry.
            store.reset()
            batch.reset()
            for f in frames.reversed() { store.append(f, to: batch) }
            device.receiveQueue(0).push(from: batch, counters: counters)
            batch.reset()
            XCTAssertEqual(port.pull(queue: 0, into: batch), 48)
            XCTAssertEqual((0..<batch.count).map { batch.frameBytes($0) }, frames.reversed(), "round \(round) from the back-end")
            port.release(queue: 0)
        }
        let seen = port.counters[0].snapshot
        XCTAssertEqual(seen.txPackets, 480)
        XCTAssertEqual(seen.rxPackets, 480)
        XCTAssertEqual(seen.totalDrops, 0)
        XCTAssertEqual(counters.snapshot.totalDrops, 0, "the back-end always found a posted buffer")
    }

    func testAServerPortTakesTheBackEndThatConnects() throws {
        let log = CapturedLog()
        let port = try VirtioUserPort(path: path, server: true, queueSize: 64, name: "vu", gate: UngatedDataPath(),
                                      logger: log.logger)
        XCTAssertEqual(port.state, "listening")
        let device = VhostDevice(name: "dut", logger: log.logger)
        let endpoint = try VhostUserEndpoint(path: path, mode: .client, device: device, logger: log.logger)
        serve(port, endpoint) { port.isRunning && device.transmitQueue(0).isRunning }
        XCTAssertEqual(port.state, "running", "\(log.lines)")
        let store = FrameStore()
        let batch = PacketBatch(capacity: 4)
        store.append(ethernetFrame(length: 80), to: batch)
        port.push(queue: 0, from: batch)
        batch.reset()
        XCTAssertEqual(device.transmitQueue(0).pull(into: batch, counters: QueueCounters()), 1)
        XCTAssertEqual(batch.frameBytes(0), ethernetFrame(length: 80))
    }

    func testAFullTransmitRingDropsTheRestAndAFrameTooLongIsCounted() throws {
        let log = CapturedLog()
        let (device, _, port) = try connected(log, queueSize: 16)
        let store = FrameStore()
        let batch = PacketBatch(capacity: 32)
        store.append(ethernetFrame(length: VirtioUserPort.maxFrameLength + 1), to: batch)
        for i in 0..<20 { store.append(ethernetFrame(length: 100, seed: UInt8(i)), to: batch) }
        port.push(queue: 0, from: batch)
        let seen = port.counters[0].snapshot
        XCTAssertEqual(seen.drops[.tooLong], 1)
        XCTAssertEqual(seen.txPackets, 16)
        XCTAssertEqual(seen.drops[.txFull], 4)
        XCTAssertEqual(port.room(atMost: 100), 0)
        batch.reset()
        XCTAssertEqual(device.transmitQueue(0).pull(into: batch, counters: QueueCounters()), 16)
        device.transmitQueue(0).release()
        XCTAssertEqual(port.room(atMost: 100), 16, "used descriptors count as room before they are taken back")
    }

    /// The back-end writes a used entry saying 9000 bytes went into a 2 KiB buffer.
    func testABackEndThatOverrunsABufferBreaksThePortAndNothingElse() throws {
        let log = CapturedLog()
        let (_, endpoint, port) = try connected(log)
        let used = port.memory.base + port.receiveRing.layout.usedOffset
        (used + 4).storeBytes(of: UInt32(7), as: UInt32.self)
        (used + 8).storeBytes(of: UInt32(9000), as: UInt32.self)
        (used + 2).storeBytes(of: UInt16(1), as: UInt16.self)
        let batch = PacketBatch(capacity: 32)
        XCTAssertEqual(port.pull(queue: 0, into: batch), 0)
        XCTAssertEqual(batch.count, 0)
        XCTAssertEqual(port.brokenReason, .usedLengthTooLong(id: 7, length: 9000, buffer: 2048))
        XCTAssertTrue(port.state.hasPrefix("broken: back-end used entry id 7 says 9000 bytes"), port.state)
        let store = FrameStore()
        store.append(ethernetFrame(length: 64), to: batch)
        port.push(queue: 0, from: batch)
        XCTAssertEqual(port.counters[0].snapshot.drops[.deviceBroken], 1)
        port.service(now: MonotonicClock.now())
        port.service(now: MonotonicClock.now())
        XCTAssertEqual(log.lines.filter { $0.contains("9000") }.count, 1, "one log line: \(log.lines)")
        // A new connection starts afresh.
        endpoint.disconnect("test")
        serve(port, endpoint) { !port.frontEnd.isConnected }
        XCTAssertNil(port.brokenReason)
        serve(port, endpoint) { port.isRunning }
        XCTAssertEqual(port.state, "running")
    }

    func testUsedEntriesTheDriverNeverOfferedBreakThePort() throws {
        let log = CapturedLog()
        let (_, _, port) = try connected(log)
        let used = transmitUsedRing(port)
        // Nothing in flight on the transmit ring, yet the used index moves.
        (used + 2).storeBytes(of: UInt16(1), as: UInt16.self)
        let store = FrameStore()
        let batch = PacketBatch(capacity: 4)
        store.append(ethernetFrame(length: 64), to: batch)
        port.push(queue: 0, from: batch)
        XCTAssertEqual(port.brokenReason, .usedIndexJump(usedIndex: 1, lastSeen: 0, inFlight: 0))
        XCTAssertEqual(port.counters[0].snapshot.drops[.deviceBroken], 1)

        let (_, _, other) = try connectedAgain(log)
        let otherUsed = transmitUsedRing(other)
        other.push(queue: 0, from: batch)  // descriptor 255 in flight
        (otherUsed + 4).storeBytes(of: UInt32(3), as: UInt32.self)
        (otherUsed + 2).storeBytes(of: UInt16(1), as: UInt16.self)
        other.push(queue: 0, from: batch)
        XCTAssertEqual(other.brokenReason, .usedIDNotInFlight(3))
    }

    /// The transmit ring follows the receive ring, a page-rounded ring's length in.
    private func transmitUsedRing(_ port: VirtioUserPort) -> UnsafeMutableRawPointer {
        let layout = port.transmitRing.layout
        return port.memory.base + (layout.byteCount + 4095) / 4096 * 4096 + layout.usedOffset
    }

    private func connectedAgain(_ log: CapturedLog) throws -> (VhostDevice, VhostUserEndpoint, VirtioUserPort) {
        unlink(path)
        path += ".2"
        return try connected(log)
    }

    // MARK: Replies that lie

    /// A back-end played by the test: it reads the port's requests and answers as told.
    final class ScriptedBackEnd {
        let connection: FileDescriptor
        var decoder = MessageDecoder(role: .backEnd)
        var seen: [VhostUserRequest] = []

        init(listener: DescriptorSlot, port: VirtioUserPort) throws {
            connection = try Self.accept(listener.rawValue, port: port)
        }

        static func accept(_ listener: Int32, port: VirtioUserPort) throws -> FileDescriptor {
            for _ in 0..<1000 {
                port.service(now: MonotonicClock.now())
                if let fd = try UnixSocket.accept(listener) { return fd }
                usleep(1000)
            }
            throw TestFailure("the port never connected")
        }

        /// Reads requests until `request` arrives.
        func await(_ request: VhostUserRequest) throws {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
            defer { buffer.deallocate() }
            for _ in 0..<200 {
                while let next = decoder.next() {
                    let message = try next.get()
                    seen.append(message.request)
                    if message.request == request { return }
                }
                var p = pollfd(fd: connection.rawValue, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 20) == 1 else { continue }
                guard let r = try UnixSocket.receive(connection.rawValue, into: buffer), r.count > 0 else { break }
                decoder.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<r.count]), descriptors: r.fds)
            }
            throw TestFailure("\(request.specName) never came; saw \(seen)")
        }

        func reply(_ request: VhostUserRequest, _ value: UInt64) throws {
            try UnixSocket.send(connection.rawValue, bytes: MessageEncoder.reply(to: request, payload: .u64(value)))
        }
    }

    func scripted(_ log: CapturedLog) throws -> (DescriptorSlot, VirtioUserPort) {
        let socket = try UnixSocket.listen(path: path)
        try socket.setNonBlocking()
        let listener = DescriptorSlot(socket)
        let port = try VirtioUserPort(path: path, server: false, queueSize: 64, name: "vu", gate: UngatedDataPath(),
                                      logger: log.logger)
        return (listener, port)
    }

    func testABackEndWithoutVersion1IsRefused() throws {
        let log = CapturedLog()
        let (listener, port) = try scripted(log)
        let backEnd = try ScriptedBackEnd(listener: listener, port: port)
        try backEnd.await(.getFeatures)
        XCTAssertEqual(backEnd.seen, [.setOwner, .getFeatures])
        try backEnd.reply(.getFeatures, VirtioNetFeatures.mergeableRxBuffers.rawValue)
        serve(port) { !port.frontEnd.isConnected }
        XCTAssertFalse(port.isRunning)
        XCTAssertTrue(port.state.contains("does not offer VIRTIO_F_VERSION_1"), port.state)
        XCTAssertTrue(log.lines.contains { $0.hasPrefix("error") && $0.contains("VERSION_1") }, "\(log.lines)")
    }

    func testARefusedMemoryTableOrAReplyOutOfTurnClosesTheConnection() throws {
        let log = CapturedLog()
        let (listener, port) = try scripted(log)
        let backEnd = try ScriptedBackEnd(listener: listener, port: port)
        try backEnd.await(.getFeatures)
        try backEnd.reply(.getFeatures, (VirtioNetFeatures.version1.union(.protocolFeatures)).rawValue)
        serve(port) { false }
        try backEnd.await(.getProtocolFeatures)
        try backEnd.reply(.getProtocolFeatures, VhostUserProtocolFeatures.replyAck.rawValue)
        serve(port) { false }
        try backEnd.await(.setMemTable)
        XCTAssertEqual(backEnd.seen, [.setOwner, .getFeatures, .getProtocolFeatures, .setProtocolFeatures,
                                      .setFeatures, .setMemTable])
        try backEnd.reply(.setFeatures, 0)
        try backEnd.reply(.setMemTable, 1)
        serve(port) { !port.frontEnd.isConnected }
        XCTAssertFalse(port.isRunning)
        XCTAssertTrue(port.state.contains("refused VHOST_USER_SET_MEM_TABLE (status 1)"), port.state)

        // The client comes back; this time the reply answers a question nobody asked.
        let again = try ScriptedBackEnd(listener: listener, port: port)
        try again.await(.getFeatures)
        try again.reply(.getProtocolFeatures, 0)
        serve(port) { !port.frontEnd.isConnected }
        XCTAssertTrue(port.state.contains("where one to VHOST_USER_GET_FEATURES was due"), port.state)
    }

    struct TestFailure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    func testABackEndThatNeverAnswersIsGivenUp() throws {
        let log = CapturedLog()
        let socket = try UnixSocket.listen(path: path)
        try socket.setNonBlocking()
        let listener = DescriptorSlot(socket)
        let port = try VirtioUserPort(path: path, server: false, queueSize: 64, name: "vu", gate: UngatedDataPath(),
                                      logger: log.logger, replyTimeout: 0.05)
        let backEnd = try ScriptedBackEnd(listener: listener, port: port)
        try backEnd.await(.getFeatures)
        serve(port) { !port.frontEnd.isConnected }
        XCTAssertTrue(port.state.contains("no reply to VHOST_USER_GET_FEATURES within 0.05 s"), port.state)
    }

    func serve(_ port: VirtioUserPort, until done: () -> Bool) {
        for _ in 0..<50 where !done() {
            port.service(now: MonotonicClock.now())
            usleep(2000)
        }
    }
}
