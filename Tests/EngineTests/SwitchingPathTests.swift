import Model
import Packets
import Ports
import Switching
import TestSupport
import XCTest

@testable import Engine

/// The switch's data path over real rings (mock guests): learning, flooding,
/// unicast, no hairpin, VLAN filtering, and tags pushed and popped by reference.
final class SwitchingPathTests: XCTestCase {
    let a = "52:54:00:00:00:0a", b = "52:54:00:00:00:0b", c = "52:54:00:00:00:0c"
    let broadcast = "ff:ff:ff:ff:ff:ff"
    var log = CapturedLog()

    private func guests(_ n: Int) throws -> [TestGuest] {
        try (0..<n).map { try TestGuest("g\($0)", log: log) }
    }

    func testUnknownFloodsThenLearnedGoesUnicastAndNeverBack() throws {
        let g = try guests(3)
        let sw = try SwitchHarness(g.map { (.vhost($0.port), .access(1)) })
        for x in g { x.postBuffers(16) }

        g[0].send(frame(from: a, to: broadcast))
        sw.pass()
        XCTAssertEqual(g[1].received().count, 1, "broadcast reaches every other port")
        XCTAssertEqual(g[2].received().count, 1)
        XCTAssertEqual(g[0].received().count, 0, "never back out of the ingress port")
        XCTAssertEqual(sw.bridge.database.lookup(FDBKey(vlan: 1, mac: MACAddress(a)!)), 0, "a learned on port 0")

        g[1].send(frame(from: b, to: a))
        sw.pass()
        XCTAssertEqual(g[0].received().map(\.frame), [frame(from: b, to: a)], "to a learned address: only its port")
        XCTAssertEqual(g[2].received().count, 0)
        XCTAssertEqual(sw.worker.decisions.unicastFrames, 1)
        XCTAssertEqual(sw.worker.decisions.floodedFrames, 1)

        // c is unknown: flooded to the two other ports.
        g[0].send(frame(from: a, to: c))
        sw.pass()
        XCTAssertEqual(g[1].received().count, 1)
        XCTAssertEqual(g[2].received().count, 1)

        // A frame to an address learned behind its own ingress port goes nowhere, counted.
        g[0].send(frame(from: c, to: a))
        sw.pass()
        XCTAssertEqual(g.map { $0.received().count }, [0, 0, 0])
        XCTAssertEqual(g[0].counters.drops[.hairpin], 1)
        // ...and c was learned on port 0 from that frame, a station move from nowhere.
        XCTAssertEqual(sw.bridge.database.lookup(FDBKey(vlan: 1, mac: MACAddress(c)!)), 0)

        // c moves to port 2.
        g[2].send(frame(from: c, to: b))
        sw.pass()
        XCTAssertEqual(g[1].received().count, 1)
        XCTAssertEqual(sw.bridge.database.lookup(FDBKey(vlan: 1, mac: MACAddress(c)!)), 2)
        XCTAssertEqual(sw.bridge.database.counters.moves, 1)
    }

    /// A worker holds each vhost queue pair's rings from one configuration to
    /// the next (`VhostQueuePair`); a driver that comes back with the other ring
    /// layout (and a new memory table) changes no configuration, so each burst
    /// must go through the layout negotiated now.
    func testADriverBackWithTheOtherRingLayoutIsPulledAndPushedThroughIt() throws {
        let g = try guests(2)
        let sw = try SwitchHarness(g.map { (.vhost($0.port), .access(1)) })
        g[1].postBuffers(4)
        g[0].send(frame(from: a, to: b))
        sw.pass()
        XCTAssertEqual(g[1].received().count, 1, "split rings first")

        let packed = try g.map { try MockFrontEnd(device: $0.device, packed: true) }
        for driver in packed { driver.setUp() }
        XCTAssertTrue(g[0].device.packedRings && g[1].device.packedRings)
        for _ in 0..<4 { packed[1].receiveRing.offerRX(bufferSizes: [2048]) }
        let header = [UInt8](repeating: 0, count: 12)
        packed[0].transmitRing.offerTX(frame: frame(from: a, to: b, seed: 1), header: header, split: nil)
        packed[1].transmitRing.offerTX(frame: frame(from: b, to: a, seed: 2), header: header, split: nil)
        sw.pass()
        XCTAssertEqual(packed[1].receiveRing.receive().map(\.frame), [frame(from: a, to: b, seed: 1)],
                       "pulled from guest a's packed ring, pushed into guest b's")
        XCTAssertEqual(packed[0].receiveRing.receive().count, 0, "guest a posted no buffer: dropped, counted")
        XCTAssertEqual(g[0].counters.drops[.noRxBuffer], 1)
    }

    func testASteadyFlowGoesAsOneBurstAndLearnsOnce() throws {
        let g = try guests(2)
        let sw = try SwitchHarness(g.map { (.vhost($0.port), .access(1)) })
        g[1].postBuffers(64)
        for i in 0..<32 { g[0].send(frame(from: a, to: b, seed: UInt8(i))) }
        sw.pass()
        XCTAssertEqual(g[1].received().map(\.frame), (0..<32).map { frame(from: a, to: b, seed: UInt8($0)) })
        XCTAssertEqual(sw.bridge.database.counters.learned, 1)
        XCTAssertEqual(sw.worker.learning.overflows.load(ordering: .relaxed), 0)
    }

    /// Repeats of one flow in a burst reuse its decision; every frame is still counted,
    /// and a different flow in between gets its own decision.
    func testInterleavedFlowsInOneBurstEachGoTheirWay() throws {
        let g = try guests(3)
        let sw = try SwitchHarness(g.map { (.vhost($0.port), .access(1)) })
        for x in g { x.postBuffers(32) }
        g[1].send(frame(from: b, to: broadcast))
        g[2].send(frame(from: c, to: broadcast))
        sw.pass()
        _ = g.map { $0.received() }
        let before = sw.worker.decisions.unicastFrames
        // a→b, a→b, a→c, a→b, a→c: b and c are known, so all unicast, each to its own port.
        for dst in [b, b, c, b, c] { g[0].send(frame(from: a, to: dst)) }
        sw.pass()
        XCTAssertEqual(g[1].received().map(\.frame), [frame(from: a, to: b), frame(from: a, to: b), frame(from: a, to: b)])
        XCTAssertEqual(g[2].received().map(\.frame), [frame(from: a, to: c), frame(from: a, to: c)])
        XCTAssertEqual(sw.worker.decisions.unicastFrames - before, 5, "every frame counted, repeated or not")
    }

    func testGroupSourceAddressesAreDroppedAndCounted() throws {
        let g = try guests(2)
        let sw = try SwitchHarness(g.map { (.vhost($0.port), .access(1)) })
        g[1].postBuffers(4)
        g[0].send(frame(from: "01:00:5e:00:00:01", to: b))
        sw.pass()
        XCTAssertEqual(g[1].received().count, 0)
        XCTAssertEqual(g[0].counters.drops[.invalidSource], 1)
        XCTAssertEqual(sw.bridge.database.counters.entries, 0)
    }

    func testALoneVLANMemberCountsNoDestination() throws {
        let g = try guests(2)
        let sw = try SwitchHarness([(.vhost(g[0].port), .access(10)), (.vhost(g[1].port), .access(20))])
        g[1].postBuffers(4)
        g[0].send(frame(from: a, to: broadcast))
        sw.pass()
        XCTAssertEqual(g[1].received().count, 0, "VLAN 10 never leaks into VLAN 20")
        XCTAssertEqual(g[0].counters.drops[.noDestination], 1)
    }

    func testAccessToTrunkPushesTheTagAndTrunkToAccessPopsIt() throws {
        let g = try guests(3)
        let sw = try SwitchHarness([(.vhost(g[0].port), .access(10)), (.vhost(g[1].port), .access(20)),
                                    (.vhost(g[2].port), .trunk([10, 20]))])
        for x in g { x.postBuffers(16) }

        let untagged = frame(from: a, to: broadcast, length: 80)
        g[0].send(untagged)
        sw.pass()
        XCTAssertEqual(g[1].received().count, 0, "VLAN 10 stays out of VLAN 20")
        let onTrunk = g[2].received()
        XCTAssertEqual(onTrunk.map(\.frame), [frame(from: a, to: broadcast, vlan: 10, length: 84)])

        g[2].send(frame(from: c, to: broadcast, vlan: 20, length: 84))
        sw.pass()
        XCTAssertEqual(g[0].received().count, 0)
        XCTAssertEqual(g[1].received().map(\.frame), [frame(from: c, to: broadcast, length: 80)], "popped on the access port")

        // Unicast back through the trunk to a (learned on port 0, VLAN 10).
        g[2].send(frame(from: c, to: a, vlan: 10, length: 70))
        sw.pass()
        XCTAssertEqual(g[0].received().map(\.frame), [frame(from: c, to: a, length: 66)])
        XCTAssertEqual(sw.bridge.database.lookup(FDBKey(vlan: 10, mac: MACAddress(c)!)), 2)
        XCTAssertEqual(sw.bridge.database.lookup(FDBKey(vlan: 20, mac: MACAddress(c)!)), 2)
    }

    func testVLANIngressFiltering() throws {
        let g = try guests(2)
        let sw = try SwitchHarness([(.vhost(g[0].port), .access(10)), (.vhost(g[1].port), .trunk([10]))])
        for x in g { x.postBuffers(8) }
        g[0].send(frame(from: a, to: broadcast, vlan: 10))  // tagged on an access port
        g[1].send(frame(from: b, to: broadcast))            // untagged on a trunk
        g[1].send(frame(from: b, to: broadcast, vlan: 30))  // a VLAN the trunk does not carry
        sw.pass()
        XCTAssertEqual(g[0].received().count + g[1].received().count, 0)
        XCTAssertEqual(g[0].counters.drops[.vlanFiltered], 1)
        XCTAssertEqual(g[1].counters.drops[.vlanFiltered], 2)
        XCTAssertEqual(sw.bridge.database.counters.entries, 0, "filtered frames teach nothing")
    }

    func testTagEditsMoveChecksumOffsetsAndWorkOnSplitHeaders() throws {
        let g = try guests(2)
        let sw = try SwitchHarness([(.vhost(g[0].port), .access(7)), (.vhost(g[1].port), .trunk([7]))])
        for x in g { x.postBuffers(8) }
        // A TSO frame (the guests took GUEST_TSO4): NEEDS_CSUM, csum_start 34, csum_offset 16, hdr_len 54.
        let gso = GSOTestFrame(payloadLength: 46, segmentSize: 1448)
        func addressed(from source: String, to destination: String) -> [UInt8] {
            Array(frame(from: source, to: destination)[..<12]) + gso.bytes[12...]
        }
        var header = [UInt8](repeating: 0, count: 12)
        header.withUnsafeMutableBytes { gso.header.store(to: $0.baseAddress!) }
        // Header and frame split so that the Ethernet header spans three buffers.
        let f = addressed(from: a, to: broadcast)
        g[0].send(f, header: header, split: [12 + 5, 4, 100 - 9])
        sw.pass()
        let out = g[1].received()
        XCTAssertEqual(out.map(\.frame), [tagged(f, vlan: 7)])
        XCTAssertEqual(out.first?.header[6], 38, "csum_start moves with the tag")
        XCTAssertEqual(out.first?.header[2], 58, "hdr_len moves with the tag")
        XCTAssertEqual(out.first?.header[8], 16, "csum_offset counts from csum_start: unchanged")
        XCTAssertEqual(g[1].port.counters[0].snapshot.offloads[.gsoPassed], 1)

        g[1].send(tagged(addressed(from: b, to: a), vlan: 7), header: out[0].header, split: [12 + 13, 12 + 104 - 25])
        sw.pass()
        let back = g[0].received()
        XCTAssertEqual(back.map(\.frame), [addressed(from: b, to: a)])
        XCTAssertEqual(back.first?.header[6], 34)
        XCTAssertEqual(back.first?.header[2], 54)
    }

    func testStaticEntriesHoldAgainstLearning() throws {
        let g = try guests(3)
        let sw = try SwitchHarness(g.map { (.vhost($0.port), .access(1)) })
        for x in g { x.postBuffers(8) }
        XCTAssertTrue(sw.bridge.database.addStatic(FDBKey(vlan: 1, mac: MACAddress(b)!), port: 1))
        g[2].send(frame(from: b, to: a))  // b shows up elsewhere: the static entry wins
        sw.pass()
        XCTAssertEqual(sw.bridge.database.lookup(FDBKey(vlan: 1, mac: MACAddress(b)!)), 1)
        g[0].send(frame(from: a, to: b))
        sw.pass()
        XCTAssertEqual(g[1].received().count, 2, "b→a flooded (a unknown), then a→b by the static entry")
        XCTAssertEqual(g[2].received().count, 0, "a→b went to port 1 only")
    }
}

/// A guest that stops takes its learned addresses with it; static entries stay.
final class GuestDepartureFlushTests: XCTestCase {
    func testAStoppedGuestsLearnedAddressesAreForgotten() throws {
        let log = CapturedLog()
        let g = try (0..<2).map { try TestGuest("dep\($0)", log: log) }
        let sw = try SwitchHarness(g.map { (.vhost($0.port), .access(1)) })
        let flush = GuestDepartureFlush(guests: [(0, "dep0", g[0].device), (1, "dep1", g[1].device)],
                                        database: sw.bridge.database, logger: log.logger)
        let learned = FDBKey(vlan: 1, mac: MACAddress("52:54:00:00:00:0a")!)
        let pinned = FDBKey(vlan: 1, mac: MACAddress("52:54:00:00:00:0c")!)
        let other = FDBKey(vlan: 1, mac: MACAddress("52:54:00:00:00:0b")!)
        g[1].postBuffers(4)
        g[0].postBuffers(4)
        g[0].send(frame(from: "52:54:00:00:00:0a", to: "ff:ff:ff:ff:ff:ff"))
        g[1].send(frame(from: "52:54:00:00:00:0b", to: "ff:ff:ff:ff:ff:ff"))
        sw.pass()
        XCTAssertTrue(sw.bridge.database.addStatic(pinned, port: 0))
        flush.service(now: 0)
        XCTAssertEqual(sw.bridge.database.lookup(learned), 0, "nothing is flushed while the guest runs")

        g[0].device.reset(reason: "test: front-end gone")
        flush.service(now: 1)
        XCTAssertNil(sw.bridge.database.lookup(learned), "the stopped guest's address is forgotten")
        XCTAssertEqual(sw.bridge.database.lookup(pinned), 0, "a static entry stays")
        XCTAssertEqual(sw.bridge.database.lookup(other), 1, "the other guest's address stays")
        XCTAssertTrue(log.lines.contains { $0.contains("port dep0: guest stopped, 1 learned addresses forgotten") },
                      "\(log.lines)")
    }
}
