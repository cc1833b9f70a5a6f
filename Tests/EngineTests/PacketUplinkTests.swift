import Foundation
import Model
import Packets
import Ports
import Switching
import TestSupport
import XCTest

@testable import Engine

/// A packet port in the switch: frames from the wire flood to the other
/// ports, frames for the wire leave through the port. Needs root for the veth pair.
final class PacketUplinkTests: XCTestCase {
    func testFramesCrossTheSwitchToAndFromTheWire() throws {
        try NetworkSandbox.requireTapSupport()
        let veth = try VethPair("e")
        let uplink = try PacketPort(interface: veth.name)
        let peer = try veth.peerSocket()
        let sink = SinkPort()
        let gen = GenPort(destination: MACAddress.broadcast, source: MACAddress(2, 0, 0, 0, 0, 0x0b), frameSize: 90, count: 5)
        let sw = try SwitchHarness([(.packet(uplink), .access(1)), (.sink(sink), .access(1)), (.gen(gen), .access(1))])
        let fromWire = (0..<10).map { frame(from: "02:00:00:00:00:0a", to: "ff:ff:ff:ff:ff:ff", length: 100, seed: UInt8($0)) }
        for f in fromWire { try peer.send(f) }

        let deadline = Date().addingTimeInterval(3)
        while sink.counters.snapshot.txPackets < 15, Date() < deadline {
            sw.pass()
            usleep(1000)
        }
        XCTAssertEqual(sink.counters.snapshot.txPackets, 15, "10 from the wire, 5 from the generator")
        XCTAssertEqual(uplink.counters[0].snapshot.rxPackets, 10)
        XCTAssertEqual(uplink.counters[0].snapshot.txPackets, 5)
        var toWire: [[UInt8]] = []
        while let f = try peer.receive(timeout: 0.2) { toWire.append(f) }
        XCTAssertEqual(toWire.count, 5)
        XCTAssertTrue(toWire.allSatisfy { $0.count == 90 && $0[0..<6] == [0xff, 0xff, 0xff, 0xff, 0xff, 0xff] })
        XCTAssertEqual(sw.bridge.database.lookup(FDBKey(vlan: 1, mac: MACAddress(2, 0, 0, 0, 0, 0x0a))), 0, "learned behind the uplink")
    }
}
