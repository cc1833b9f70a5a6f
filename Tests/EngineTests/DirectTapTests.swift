import Foundation
import Glibc
import Model
import Packets
import Platform
import Ports
import Switching
import TestSupport
import VhostUser
import Virtio
import XCTest

@testable import Engine

/// TAP → guest with the kernel's copy only (Worker+Direct.swift), on a real
/// TAP and a mock guest: these tests need root and /dev/net/tun and fail with
/// the reason when either is missing. A packet socket bound to the TAP stands
/// for the kernel's side: what it sends, the kernel transmits on the TAP.
final class DirectTapTests: XCTestCase {
    let station = "52:54:00:00:00:0a", guestMAC = "52:54:00:00:00:0b", other = "52:54:00:00:00:0c"
    var log = CapturedLog()

    override func setUpWithError() throws {
        try NetworkSandbox.requireTapSupport()
    }

    /// A TAP (port 0) and a guest (port 1), both access ports of VLAN 1.
    final class Rig {
        let tap: TapPort
        let guest: TestGuest
        let socket: PacketSocket
        let sw: SwitchHarness
        var delivered: [ReceivedFrame] = []

        init(tap: TapPort, guest: TestGuest, vlans: [VLANMode] = [.access(1), .access(1)]) throws {
            self.tap = tap
            self.guest = guest
            socket = try PacketSocket(interface: tap.device.index, ignoreOutgoing: true)
            sw = try SwitchHarness([(.tap(tap), vlans[0]), (.vhost(guest.port), vlans[1])])
        }

        /// Frames the TAP's queue dealt with: taken or dropped.
        var tapSeen: UInt64 {
            let s = tap.counters[0].snapshot
            return s.rxPackets + s.drops.filter { $0.key != .hairpin && $0.key != .noDestination }.values.reduce(0, +)
        }

        /// Passes of the worker until `done` holds or 2 s passed; frames the guest got are kept in `delivered`.
        @discardableResult
        func run(until done: () -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(2)
            repeat {
                sw.pass()
                delivered += guest.received()
                if done() { return true }
                usleep(500)
            } while Date() < deadline
            return false
        }
    }

    private func makeTap(_ suffix: String) throws -> TapPort {
        let name = NetworkSandbox.interfaceName("ferrydt", suffix)
        NetworkSandbox.removeInterface(name)
        addTeardownBlock { NetworkSandbox.removeInterface(name) }
        let port = try TapPort(name: name, queues: 1, mtu: 1500, batchCapacity: 64)
        addTeardownBlock { port.device.close() }
        try NetworkSandbox.disableIPv6(name)
        try NetworkSandbox.drain(port.device)
        return port
    }

    private func makeRig(_ suffix: String, withoutFeatures: UInt64 = 0, packed: Bool = false) throws -> Rig {
        try Rig(tap: makeTap(suffix), guest: TestGuest("dt\(suffix)", log: log, withoutFeatures: withoutFeatures,
                                                       packed: packed))
    }

    // MARK: When it applies

    func testTheDirectPathIsChosenOnlyForATapWhoseFramesCanGoToOneGuest() throws {
        let tap = try makeTap("w")
        let g = try (0..<2).map { try TestGuest("dtw\($0)", log: log) }
        func peer(_ ports: [(Ports.Port, VLANMode)]) throws -> Int? {
            let sw = try SwitchHarness(ports)
            let source = try XCTUnwrap(sw.worker.sources.first { if case .tap = $0.port { true } else { false } })
            return source.directPeer
        }
        XCTAssertEqual(try peer([(.tap(tap), .access(1)), (.vhost(g[0].port), .access(1))]), 1)
        XCTAssertEqual(try peer([(.vhost(g[0].port), .access(3)), (.tap(tap), .access(3))]), 0)
        XCTAssertEqual(try peer([(.tap(tap), .access(1)), (.vhost(g[0].port), .access(1)), (.vhost(g[1].port), .access(1))]),
                       nil, "a third member: frames may flood")
        XCTAssertEqual(try peer([(.tap(tap), .access(1)), (.vhost(g[0].port), .trunk([1]))]), nil, "a trunk peer")
        XCTAssertEqual(try peer([(.tap(tap), .trunk([1])), (.vhost(g[0].port), .access(1))]), nil, "a trunk TAP")
        XCTAssertEqual(try peer([(.tap(tap), .access(1)), (.sink(SinkPort()), .access(1))]), nil, "not a guest")
        XCTAssertEqual(try peer([(.tap(tap), .access(1)), (.vhost(g[0].port), .access(2))]), nil, "alone in its VLAN")

        // A transmit queue shared with another worker takes a lock: not direct.
        let bridge = Bridge(database: ForwardingDatabase(capacity: 64))
        bridge.setMembership([.access(1), .access(1)])
        let worker = Worker(id: 0, cpu: nil, batchSize: 8, bridge: bridge)
        let lock = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        defer { lock.deallocate() }
        lock.initialize(to: 0)
        worker.configure(ports: [WorkerPort(port: .tap(tap), vlan: .access(1), transmitQueue: 0),
                                 WorkerPort(port: .vhost(g[0].port), vlan: .access(1), transmitQueue: 0, transmitLock: TransmitLock(word: lock))],
                         sources: [WorkerSource(index: 0, port: .tap(tap), queue: 0)])
        XCTAssertNil(worker.sources[0].directPeer)
    }

    // MARK: Delivery

    func testTapFramesReachTheGuestByteExactStraightIntoItsBuffers() throws {
        let rig = try makeRig("d")
        XCTAssertEqual(rig.tap.maxFrameLength, 1514)
        XCTAssertEqual(rig.sw.worker.sources.first { if case .tap = $0.port { true } else { false } }?.directPeer, 1)
        rig.guest.postBuffers(16, size: 2048)
        // Stale bytes in the guest's buffers must not show through the header.
        rig.guest.frontEnd.ram.write([UInt8](repeating: 0xAA, count: 16 * 2048 + 256), at: rig.guest.frontEnd.rx.buffers.lowerBound)
        let frames = [60, 64, 100, 333, 1000, 1514].enumerated().map { i, size in
            frame(from: station, to: i == 0 ? "ff:ff:ff:ff:ff:ff" : guestMAC, length: size, seed: UInt8(i))
        }
        for f in frames { try rig.socket.send(f) }

        XCTAssertTrue(rig.run { rig.delivered.count == frames.count }, "delivered \(rig.delivered.count) of \(frames.count)")
        XCTAssertEqual(rig.delivered.map(\.frame), frames)
        for (i, got) in rig.delivered.enumerated() {
            XCTAssertEqual(got.header, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], "frame \(i): no offload, num_buffers 1")
            XCTAssertEqual(got.entries.count, 1)
            XCTAssertEqual(Int(got.entries[0].length), 12 + frames[i].count)
        }
        // The proof it went direct: the TAP's own receive buffers never held a frame.
        XCTAssertEqual(rig.tap.bufferedFrames.load(ordering: .relaxed), 0)
        let tapCounters = rig.tap.counters[0].snapshot
        XCTAssertEqual(tapCounters.rxPackets, UInt64(frames.count))
        XCTAssertEqual(tapCounters.rxBytes, UInt64(frames.reduce(0) { $0 + $1.count }))
        XCTAssertEqual(tapCounters.drops, [:])
        XCTAssertEqual(rig.guest.counters.txPackets, UInt64(frames.count))
        XCTAssertEqual(rig.guest.counters.txBytes, tapCounters.rxBytes)
        XCTAssertEqual(rig.sw.bridge.database.lookup(FDBKey(vlan: 1, mac: MACAddress(station)!)), 0, "learned on the TAP")
        XCTAssertEqual(rig.sw.worker.decisions.floodedFrames, UInt64(frames.count))
        XCTAssertEqual(rig.guest.frontEnd.rx.usedIndex, UInt16(frames.count), "one used entry per frame")
    }

    /// The same path into a guest on packed rings: each chain lent, filled by the
    /// kernel, taken, and the burst's used descriptors written together.
    func testTapFramesReachAPackedGuestStraightIntoItsBuffers() throws {
        let rig = try makeRig("p", packed: true)
        XCTAssertTrue(rig.guest.device.packedRings)
        rig.guest.postBuffers(8, size: 2048)
        let frames = [60, 200, 1514, 64, 999].enumerated().map { i, size in
            frame(from: station, to: i == 0 ? "ff:ff:ff:ff:ff:ff" : guestMAC, length: size, seed: UInt8(i))
        }
        for f in frames { try rig.socket.send(f) }

        XCTAssertTrue(rig.run { rig.delivered.count == frames.count }, "delivered \(rig.delivered.count) of \(frames.count)")
        XCTAssertEqual(rig.delivered.map(\.frame), frames)
        XCTAssertEqual(rig.delivered.map(\.numBuffers), frames.map { _ in 1 })
        XCTAssertEqual(rig.tap.bufferedFrames.load(ordering: .relaxed), 0, "the TAP's own buffers never held a frame")
        XCTAssertEqual(rig.guest.counters.txPackets, UInt64(frames.count))
        XCTAssertEqual(rig.guest.frontEnd.packed?.rx.outstanding, 3, "the chains not used are still the guest's")
    }

    /// A guest without GUEST_CSUM cannot take the partial checksums the TAP
    /// hands over: the frame goes the usual way and its checksum is finished.
    func testAGuestWithoutGuestCsumGetsTheChecksumFinished() throws {
        let rig = try makeRig("f", withoutFeatures: VirtioNetFeatures.guestCsum.rawValue)
        let vnet = try PacketSocket(interface: rig.tap.device.index, vnetHeader: true, ignoreOutgoing: true)
        try rig.tap.setOffloads([.checksum])
        rig.guest.postBuffers(4)
        let f = frame(from: station, to: guestMAC, length: 120)
        // virtio_net_hdr: NEEDS_CSUM, no GSO, csum_start 34, csum_offset 6; little-endian.
        try vnet.send([1, 0, 0, 0, 0, 0, 34, 0, 6, 0] + f)

        XCTAssertTrue(rig.run { rig.delivered.count == 1 })
        XCTAssertEqual(rig.delivered.first?.header, [0, 0, 0, 0, 0, 0, 34, 0, 6, 0, 1, 0], "NEEDS_CSUM cleared")
        var finished = f
        var sum = ~onesComplementSum(f[34...])
        if sum == 0 { sum = 0xFFFF }
        finished[40] = UInt8(sum >> 8)
        finished[41] = UInt8(sum & 0xFF)
        XCTAssertEqual(rig.delivered.first?.frame, finished)
        XCTAssertEqual(rig.tap.bufferedFrames.load(ordering: .relaxed), 1, "not the direct path")
        XCTAssertEqual(rig.guest.port.counters[0].snapshot.offloads[.checksumsCompleted], 1)
    }

    func testAFrameForAnAddressBehindTheTapIsHairpinAndTheChainStaysForTheNext() throws {
        let rig = try makeRig("h")
        rig.guest.postBuffers(1)
        try rig.socket.send(frame(from: station, to: guestMAC, length: 80))
        XCTAssertTrue(rig.run { rig.delivered.count == 1 })
        rig.guest.postBuffers(1)
        let chainsBefore = rig.guest.port.device.queues[0].postedBuffers
        XCTAssertEqual(chainsBefore, 1)

        try rig.socket.send(frame(from: other, to: station, length: 80))
        XCTAssertTrue(rig.run { rig.tap.counters[0].snapshot.drops[.hairpin] == 1 }, "\(rig.tap.counters[0].snapshot)")
        XCTAssertEqual(rig.delivered.count, 1, "not delivered")
        XCTAssertEqual(rig.guest.port.device.queues[0].postedBuffers, 1, "the chain is still the guest's to fill")
        XCTAssertEqual(rig.guest.frontEnd.rx.usedIndex, 1)
        XCTAssertEqual(rig.sw.bridge.database.lookup(FDBKey(vlan: 1, mac: MACAddress(other)!)), 0, "its source still learned")

        let next = frame(from: other, to: guestMAC, length: 90, seed: 9)
        try rig.socket.send(next)
        XCTAssertTrue(rig.run { rig.delivered.count == 2 })
        XCTAssertEqual(rig.delivered.last?.frame, next, "the chain the dropped frame was read into carries the next, whole")
        XCTAssertEqual(rig.tap.counters[0].snapshot.rxPackets, 3)
        XCTAssertEqual(rig.guest.counters.txPackets, 2)
        XCTAssertEqual(rig.tap.bufferedFrames.load(ordering: .relaxed), 0)
    }

    // MARK: Falling back

    func testNoReceiveBufferFallsBackAndEveryFrameIsCounted() throws {
        let rig = try makeRig("n")
        for i in 0..<3 { try rig.socket.send(frame(from: station, to: guestMAC, length: 100, seed: UInt8(i))) }
        XCTAssertTrue(rig.run { rig.guest.counters.drops[.noRxBuffer] == 3 }, "\(rig.guest.counters)")
        XCTAssertEqual(rig.tap.counters[0].snapshot.rxPackets, 3)
        XCTAssertEqual(rig.tap.bufferedFrames.load(ordering: .relaxed), 3, "read the usual way, dropped by push")

        rig.guest.postBuffers(2)
        try rig.socket.send(frame(from: station, to: guestMAC, length: 100, seed: 7))
        XCTAssertTrue(rig.run { rig.delivered.count == 1 })
        XCTAssertEqual(rig.tap.bufferedFrames.load(ordering: .relaxed), 3, "buffers again: direct again")
    }

    func testAGuestBufferSmallerThanTheLongestFrameFallsBackToTheCopy() throws {
        let rig = try makeRig("s")
        // 1024 bytes hold neither 12 + 1514 nor, without MRG_RXBUF, a long frame; with it, two buffers do.
        rig.guest.postBuffers(8, size: 1024)
        let frames = [frame(from: station, to: guestMAC, length: 200), frame(from: station, to: guestMAC, length: 1514, seed: 3)]
        for f in frames { try rig.socket.send(f) }
        XCTAssertTrue(rig.run { rig.delivered.count == 2 })
        XCTAssertEqual(rig.delivered.map(\.frame), frames)
        XCTAssertEqual(rig.delivered.map(\.numBuffers), [1, 2])
        XCTAssertEqual(rig.tap.bufferedFrames.load(ordering: .relaxed), 2, "both went the usual way")
    }

    func testAnMTUChangeIsFollowedAndAFrameCutByTheChainIsDropped() throws {
        let rig = try makeRig("m")
        rig.guest.postBuffers(4, size: 2048)
        // The MTU rises behind the switch's back: a frame longer than the chain is cut by tun.
        try rig.tap.device.setMTU(4000)
        let long = frame(from: station, to: guestMAC, length: 3000)
        try rig.socket.send(long)
        XCTAssertTrue(rig.run { rig.tap.counters[0].snapshot.drops[.rxBufferTooSmall] == 1 }, "\(rig.tap.counters[0].snapshot)")
        XCTAssertEqual(rig.delivered.count, 0)
        XCTAssertEqual(rig.guest.port.device.queues[0].postedBuffers, 4, "the cut frame took no chain")

        // Once the control thread has looked, such a chain is not offered: the usual path copies into two.
        rig.tap.refreshMaxFrameLength()
        XCTAssertEqual(rig.tap.maxFrameLength, 4014)
        try rig.socket.send(long)
        XCTAssertTrue(rig.run { rig.delivered.count == 1 })
        XCTAssertEqual(rig.delivered.first?.frame, long)
        XCTAssertEqual(rig.delivered.first?.numBuffers, 2)
        XCTAssertEqual(rig.tap.bufferedFrames.load(ordering: .relaxed), 1)

        try rig.tap.device.setMTU(1500)
        rig.tap.refreshMaxFrameLength()
        try rig.socket.send(frame(from: station, to: guestMAC, length: 64))
        XCTAssertTrue(rig.run { rig.delivered.count == 2 })
        XCTAssertEqual(rig.tap.bufferedFrames.load(ordering: .relaxed), 1, "direct again")
    }

    func testMTUWatchRefreshesOnceASecond() throws {
        let tap = try makeTap("r")
        let watch = PortWatch(name: "r", port: .tap(tap), logger: log.logger)
        watch.service(now: 100)
        try tap.device.setMTU(2000)
        watch.service(now: 100.5)
        XCTAssertEqual(tap.maxFrameLength, 1514)
        watch.service(now: 101)
        XCTAssertEqual(tap.maxFrameLength, 2014)
    }

    // MARK: A hostile guest

    func testAHostileChainBreaksTheDeviceOnceAndTheTapKeepsWorking() throws {
        for (suffix, hostile) in [("r", "read-only"), ("o", "outside memory")] {
            log = CapturedLog()
            let rig = try makeRig(suffix)
            let ring = rig.guest.frontEnd.rx
            if hostile == "read-only" {
                ring.offerChain([(address: ring.allocateBuffer(2048), length: 2048, writable: false)])
            } else {
                ring.offerChain([(address: ring.ram.base + (64 << 20), length: 2048, writable: true)])
            }
            let frames = (0..<2).map { frame(from: station, to: guestMAC, length: 100, seed: UInt8($0)) }
            try rig.socket.send(frames[0])
            XCTAssertTrue(rig.run { rig.guest.port.device.isBroken }, hostile)
            XCTAssertEqual(log.lines.filter { $0.contains("device broken") }.count, 1, "\(hostile): \(log.lines)")
            XCTAssertTrue(rig.run { rig.guest.counters.drops[.deviceBroken] == 1 }, "\(hostile): \(rig.guest.counters)")

            // The TAP goes on: its frames are taken and counted, the worker stands.
            try rig.socket.send(frames[1])
            XCTAssertTrue(rig.run { rig.guest.counters.drops[.deviceBroken] == 2 }, hostile)
            XCTAssertEqual(rig.tap.counters[0].snapshot.rxPackets, 2, hostile)
            XCTAssertEqual(rig.delivered.count, 0, hostile)
            XCTAssertEqual(log.lines.filter { $0.contains("device broken") }.count, 1, hostile)
        }
    }
}
