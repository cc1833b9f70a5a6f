import Model
import Packets
import Ports
import Switching
import TestSupport
import XCTest

@testable import Engine

/// IEEE 802.1D link-local group addresses (01:80:C2:00:00:0X) at ingress, as a Linux bridge
/// with STP off treats them (net/bridge/br_input.c): BPDUs flooded, PAUSE dropped, the others
/// dropped unless the ingress port's group_fwd_mask has their bit.
final class LinkLocalTests: XCTestCase {
    let a = "52:54:00:00:00:0a"
    var log = CapturedLog()

    /// The reserved addresses worth naming, and two group addresses just past them.
    let bpdu = "01:80:c2:00:00:00", pause = "01:80:c2:00:00:01", lacp = "01:80:c2:00:00:02"
    let eapol = "01:80:c2:00:00:03", lldp = "01:80:c2:00:00:0e", reserved0F = "01:80:c2:00:00:0f"
    let garp = "01:80:c2:00:00:10", ipv4Multicast = "01:00:5e:00:00:01"

    private func sendAll(_ from: TestGuest, _ destinations: [String], _ sw: SwitchHarness) {
        for d in destinations { from.send(frame(from: a, to: d)) }
        sw.pass()
    }

    private func destinations(_ received: [ReceivedFrame]) -> [String] {
        received.map { MACAddress($0.frame[0], $0.frame[1], $0.frame[2], $0.frame[3], $0.frame[4], $0.frame[5]).description }
    }

    func testByDefaultOnlyBPDUsAndOrdinaryGroupsCross() throws {
        let g = try (0..<3).map { try TestGuest("ll\($0)", log: log) }
        let sw = try SwitchHarness(g.map { (.vhost($0.port), .access(1)) })
        for x in g { x.postBuffers(16) }
        sendAll(g[0], [bpdu, pause, lacp, eapol, lldp, reserved0F, garp, ipv4Multicast], sw)
        XCTAssertEqual(destinations(g[1].received()), [bpdu, garp, ipv4Multicast])
        XCTAssertEqual(destinations(g[2].received()), [bpdu, garp, ipv4Multicast])
        XCTAssertEqual(g[0].counters.drops[.linkLocal], 5, "\(g[0].counters)")
        XCTAssertEqual(g[0].counters.drops.values.reduce(0, +), 5, "nothing else dropped")
        // The kernel learns from the link-local frames it keeps; so does Ferry.
        XCTAssertEqual(sw.bridge.database.lookup(FDBKey(vlan: 1, mac: MACAddress(a)!)), 0)
    }

    func testTheIngressPortsMaskLetsItsAddressesThrough() throws {
        let g = try (0..<2).map { try TestGuest("lm\($0)", log: log) }
        let mask = try GroupForwardMask(parsing: "0x4008")  // LLDP and 802.1X
        let sw = try SwitchHarness(g.map { (.vhost($0.port), .access(1)) }, groupForwardMasks: [mask])
        for x in g { x.postBuffers(16) }
        sendAll(g[0], [pause, lacp, eapol, lldp], sw)
        XCTAssertEqual(destinations(g[1].received()), [eapol, lldp])
        XCTAssertEqual(g[0].counters.drops[.linkLocal], 2, "PAUSE and LACP")
        // The mask is the ingress port's: g1 has none, so its LLDP stays.
        g[1].send(frame(from: "52:54:00:00:00:0b", to: lldp))
        sw.pass()
        XCTAssertEqual(g[0].received().count, 0)
        XCTAssertEqual(g[1].counters.drops[.linkLocal], 1)
    }

    func testForwardedLinkLocalFramesKeepTheirVLANAndTags() throws {
        let g = try (0..<3).map { try TestGuest("lv\($0)", log: log) }
        let everything = try GroupForwardMask(parsing: "0xfffd")
        let sw = try SwitchHarness([(.vhost(g[0].port), .trunk([10, 20])), (.vhost(g[1].port), .access(10)),
                                    (.vhost(g[2].port), .access(20))], groupForwardMasks: [everything])
        for x in g { x.postBuffers(16) }
        g[0].send(frame(from: a, to: lacp, vlan: 20, length: 68))
        sw.pass()
        XCTAssertEqual(g[1].received().count, 0, "VLAN 20 only")
        XCTAssertEqual(g[2].received().map(\.frame), [frame(from: a, to: lacp, length: 64)])
    }
}
