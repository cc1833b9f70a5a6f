import Glibc
@testable import Engine
import Model
import Packets
import Platform
@testable import Ports
import Switching
import TestSupport
import XCTest

/// A vxlan port in a switch: a remote station's address is learned behind
/// the VTEP it came from, and frames to it go to that VTEP alone; unknown
/// destinations go to every VTEP (head-end replication). Loopback sockets
/// play the remote VTEPs; needs root (the port's raw socket).
final class VxlanSwitchingTests: XCTestCase {
    let vni: UInt32 = 77
    let local = InternetAddress("127.0.0.1")!

    override func setUpWithError() throws {
        guard geteuid() == 0 else { throw NetworkSandbox.Unavailable("vxlan tests need root: the port sends through a raw socket") }
    }

    func testARemoteAddressIsLearnedBehindItsVTEPAndReachedThroughItAlone() throws {
        let vxlan = try VxlanPort(vni: vni, local: local, remotes: [InternetAddress("127.0.0.2")!, InternetAddress("127.0.0.3")!],
                                  udpPort: UDPPeer.testPort &+ 2, batchCapacity: 64)
        let second = try UDPPeer("127.0.0.2", port: UDPPeer.testPort &+ 2)
        let third = try UDPPeer("127.0.0.3", port: UDPPeer.testPort &+ 2)
        let sink = SinkPort()
        // The guest speaks only after the remote station did.
        let guest = GenPort(destination: MACAddress("02:00:00:00:00:33")!, source: MACAddress("02:00:00:00:00:11")!,
                            frameSize: 64, count: 1, delayMilliseconds: 300)
        let sw = try SwitchHarness([(.vxlan(vxlan), .access(1)), (.gen(guest), .access(1)), (.sink(sink), .access(1))])

        third.send(vxlanHeader(vni: vni) + frame(from: "02:00:00:00:00:33", to: "ff:ff:ff:ff:ff:ff"), to: local,
                   port: UDPPeer.testPort &+ 2)
        let deadline = MonotonicClock.seconds() + 2
        while sink.counters.snapshot.txPackets == 0 && MonotonicClock.seconds() <= deadline { sw.pass() }
        XCTAssertEqual(sink.counters.snapshot.txPackets, 1, "the broadcast reached the local port")
        let entry = try XCTUnwrap(sw.bridge.database.lookupWithEndpoint(FDBKey(vlan: 1, mac: MACAddress("02:00:00:00:00:33")!)))
        XCTAssertEqual(entry.port, 0)
        XCTAssertEqual(entry.endpoint, 2, "learned behind 127.0.0.3")
        XCTAssertEqual(second.receiveAll().count, 0, "nothing goes back to a VTEP from the tunnel (no hairpin)")

        while !guest.isFinished && MonotonicClock.seconds() <= deadline + 2 { sw.pass() }
        XCTAssertTrue(guest.isFinished)
        let toRemote = GenPort.udpFrame(destination: MACAddress("02:00:00:00:00:33")!, source: MACAddress("02:00:00:00:00:11")!,
                                        size: 64)
        XCTAssertEqual(third.receiveAll(), [vxlanHeader(vni: vni) + toRemote])
        XCTAssertEqual(second.receiveAll().count, 0, "a known destination goes to its VTEP alone")
        XCTAssertEqual(vxlan.endpoints.counters(2).txPackets, 1)
    }

    func testAnUnknownDestinationIsReplicatedToEveryVTEP() throws {
        let vxlan = try VxlanPort(vni: vni, local: local, remotes: [InternetAddress("127.0.0.2")!, InternetAddress("127.0.0.3")!],
                                  udpPort: UDPPeer.testPort &+ 3, batchCapacity: 64)
        let second = try UDPPeer("127.0.0.2", port: UDPPeer.testPort &+ 3)
        let third = try UDPPeer("127.0.0.3", port: UDPPeer.testPort &+ 3)
        let guest = GenPort(destination: MACAddress("02:00:00:00:00:44")!, source: MACAddress("02:00:00:00:00:11")!,
                            frameSize: 64, count: 1)
        let sw = try SwitchHarness([(.vxlan(vxlan), .access(1)), (.gen(guest), .access(1))])
        sw.pass()
        let expected = [vxlanHeader(vni: vni) + GenPort.udpFrame(destination: MACAddress("02:00:00:00:00:44")!,
                                                                 source: MACAddress("02:00:00:00:00:11")!, size: 64)]
        XCTAssertEqual(second.receiveAll(), expected)
        XCTAssertEqual(third.receiveAll(), expected)
        XCTAssertEqual(vxlan.counters[0].snapshot.txPackets, 2)
    }
}
