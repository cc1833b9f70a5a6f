import Model
import Packets
import Ports
import Switching
import TestSupport
import XCTest

@testable import Engine

/// A trunk's native VLAN (`trunk=10,20,native=10`): untagged in, untagged out for that VLAN,
/// tagged for the others, and a frame tagged with the native id taken too.
final class NativeVLANTests: XCTestCase {
    let a = "52:54:00:00:00:0a", b = "52:54:00:00:00:0b", c = "52:54:00:00:00:0c"
    let broadcast = "ff:ff:ff:ff:ff:ff"
    var log = CapturedLog()

    /// Port 0 a trunk of 10 and 20 with native 10, port 1 access 10, port 2 a plain trunk of 10 and 20.
    private func rig() throws -> ([TestGuest], SwitchHarness) {
        let g = try (0..<3).map { try TestGuest("nv\($0)", log: log) }
        let sw = try SwitchHarness([(.vhost(g[0].port), .trunk([10, 20], native: 10)),
                                    (.vhost(g[1].port), .access(10)), (.vhost(g[2].port), .trunk([10, 20]))])
        for x in g { x.postBuffers(16) }
        return (g, sw)
    }

    func testUntaggedFramesFromTheTrunkBelongToItsNativeVLAN() throws {
        let (g, sw) = try rig()
        g[0].send(frame(from: a, to: broadcast, length: 80))
        sw.pass()
        XCTAssertEqual(g[1].received().map(\.frame), [frame(from: a, to: broadcast, length: 80)], "untagged on access 10")
        XCTAssertEqual(g[2].received().map(\.frame), [frame(from: a, to: broadcast, vlan: 10, length: 84)],
                       "tagged on the plain trunk")
        XCTAssertEqual(sw.bridge.database.lookup(FDBKey(vlan: 10, mac: MACAddress(a)!)), 0)
        XCTAssertEqual(g[0].counters.drops, [:])
    }

    func testNativeVLANFramesLeaveTheTrunkUntaggedAndTheOthersTagged() throws {
        let (g, sw) = try rig()
        g[1].send(frame(from: b, to: broadcast, length: 70))
        g[2].send(frame(from: c, to: broadcast, vlan: 10, length: 74))
        g[2].send(frame(from: c, to: broadcast, vlan: 20, length: 90))
        sw.pass()
        XCTAssertEqual(g[0].received().map(\.frame), [frame(from: b, to: broadcast, length: 70),
                                                      frame(from: c, to: broadcast, length: 70),
                                                      frame(from: c, to: broadcast, vlan: 20, length: 90)])
    }

    func testAFrameTaggedWithTheNativeIDIsTakenAndLeavesEachPortItsOwnWay() throws {
        let (g, sw) = try rig()
        g[0].send(frame(from: a, to: broadcast, vlan: 10, length: 84))
        g[0].send(frame(from: a, to: broadcast, vlan: 20, length: 84))
        sw.pass()
        XCTAssertEqual(g[1].received().map(\.frame), [frame(from: a, to: broadcast, length: 80)])
        XCTAssertEqual(g[2].received().map(\.frame), [frame(from: a, to: broadcast, vlan: 10, length: 84),
                                                      frame(from: a, to: broadcast, vlan: 20, length: 84)])
    }

    func testASteadyFlowBetweenTwoTrunksIsStillRetagged() throws {
        // One destination for the whole burst: the path that hands a burst over as it is
        // must not be taken when a native VLAN means the tagging differs frame by frame.
        let (g, sw) = try rig()
        g[2].send(frame(from: c, to: broadcast, vlan: 10, length: 64))
        sw.pass()
        _ = g[0].received()
        _ = g[1].received()
        g[0].send(frame(from: a, to: c, length: 60))
        g[0].send(frame(from: a, to: c, vlan: 10, length: 64))
        g[2].send(frame(from: c, to: a, vlan: 10, length: 64))
        sw.pass()
        XCTAssertEqual(g[2].received().map(\.frame), [frame(from: a, to: c, vlan: 10, length: 64),
                                                      frame(from: a, to: c, vlan: 10, length: 64)])
        XCTAssertEqual(g[0].received().map(\.frame), [frame(from: c, to: a, length: 60)])
    }

    func testATrunkWithoutANativeVLANStillRefusesUntaggedFrames() throws {
        let (g, sw) = try rig()
        g[2].send(frame(from: c, to: broadcast))
        sw.pass()
        XCTAssertEqual(g[2].counters.drops[.vlanFiltered], 1)
        XCTAssertEqual(g[0].received().count + g[1].received().count, 0)
    }

    func testAnUplinksWireCarriesTheNativeVLANUntagged() {
        XCTAssertEqual(UplinkSteering.wireVLAN(10, on: .trunk([10, 20], native: 10)), 0)
        XCTAssertEqual(UplinkSteering.wireVLAN(20, on: .trunk([10, 20], native: 10)), 20)
        XCTAssertNil(UplinkSteering.wireVLAN(30, on: .trunk([10, 20], native: 10)))
    }
}
