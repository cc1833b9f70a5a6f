import Model
import Packets
import Ports
import Switching
import TestSupport
import XCTest

@testable import Engine

/// A switch whose port numbers span every word of a `PortSet`: guests at
/// ports 0, 150 and the last number a switch gives out, sinks in between.
/// Floods, unicast and a burst of mixed destinations reach exactly their ports.
final class WidePortsTests: XCTestCase {
    let a = "52:54:00:00:00:0a", b = "52:54:00:00:00:0b", c = "52:54:00:00:00:0c"
    let broadcast = "ff:ff:ff:ff:ff:ff"
    var log = CapturedLog()

    func testFloodUnicastAndMixedBurstsAcrossEveryWord() throws {
        let last = PortSet.maxPorts - 1
        let g = try (0..<3).map { try TestGuest("wide\($0)", log: log) }
        let sinks = (0..<PortSet.maxPorts).map { _ in SinkPort() }
        var ports: [(Ports.Port, VLANMode)] = sinks.map { (.sink($0), .access(1)) }
        for (guest, index) in zip(g, [0, 150, last]) { ports[index] = (.vhost(guest.port), .access(1)) }
        // One sink in another VLAN: never a destination of VLAN 1's floods.
        ports[700] = (.sink(sinks[700]), .access(2))
        let sw = try SwitchHarness(ports, batchSize: 64)
        for x in g { x.postBuffers(16) }
        func sinkFrames() -> [UInt64] { sinks.map { $0.counters.snapshot.txPackets } }

        g[0].send(frame(from: a, to: broadcast))
        sw.pass()
        XCTAssertEqual(g[1].received().count, 1)
        XCTAssertEqual(g[2].received().count, 1)
        XCTAssertEqual(g[0].received().count, 0, "never back out of the ingress port")
        let flooded = sinkFrames()
        for i in 0..<PortSet.maxPorts where ![0, 150, last].contains(i) {
            XCTAssertEqual(flooded[i], i == 700 ? 0 : 1, "sink \(i)")
        }

        g[1].send(frame(from: b, to: a))
        g[2].send(frame(from: c, to: a))
        sw.pass()
        XCTAssertEqual(g[0].received().map(\.frame), [frame(from: b, to: a), frame(from: c, to: a)])
        XCTAssertEqual(sw.bridge.database.lookup(FDBKey(vlan: 1, mac: MACAddress(c)!)), PortIndex(truncating: last))

        // One burst: to the last port, to port 150, a broadcast, to the last port again.
        for dst in [c, b, broadcast, c] { g[0].send(frame(from: a, to: dst)) }
        sw.pass()
        XCTAssertEqual(g[2].received().map(\.frame), [frame(from: a, to: c), frame(from: a, to: broadcast), frame(from: a, to: c)])
        XCTAssertEqual(g[1].received().map(\.frame), [frame(from: a, to: b), frame(from: a, to: broadcast)])
        XCTAssertEqual(zip(sinkFrames(), flooded).filter { $0 != $1 }.count, PortSet.maxPorts - 4,
                       "the broadcast reached every sink of VLAN 1 once more, the unicast none")

        // A steady flow to the last port: one burst, the one-port path, nothing to the sinks.
        let before = sinkFrames()
        for i in 0..<8 { g[0].send(frame(from: a, to: c, seed: UInt8(i))) }
        sw.pass()
        XCTAssertEqual(g[2].received().map(\.frame), (0..<8).map { frame(from: a, to: c, seed: UInt8($0)) })
        XCTAssertEqual(sinkFrames(), before)
    }

    /// A flood that reaches a single port far from the ingress one (the VLAN's
    /// only other member) is delivered like unicast.
    func testAFloodToTheOnlyOtherMemberPastOneWord() throws {
        let g = try (0..<2).map { try TestGuest("wide-pair\($0)", log: log) }
        var ports: [(Ports.Port, VLANMode)] = (0..<300).map { _ in (.sink(SinkPort()), .access(1)) }
        ports[5] = (.vhost(g[0].port), .access(9))
        ports[299] = (.vhost(g[1].port), .access(9))
        let sw = try SwitchHarness(ports)
        g[1].postBuffers(8)
        for _ in 0..<4 { g[0].send(frame(from: a, to: broadcast)) }
        sw.pass()
        XCTAssertEqual(g[1].received().count, 4)
        XCTAssertEqual(sw.worker.decisions.floodedFrames, 4, "still counted as floods")
    }
}
