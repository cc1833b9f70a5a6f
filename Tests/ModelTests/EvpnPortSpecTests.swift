import Model
import XCTest

/// `evpn=VXLANDEV,evpn_port=BRIDGEPORT` on a vxlan port.
final class EvpnPortSpecTests: XCTestCase {
    func testBothDevicesMakeAnEvpnPort() throws {
        let spec = try PortSpec(parsing: "vxlan:100,local=198.18.1.1,evpn=vxk100,evpn_port=fe100,name=vx,vlan=10")
        XCTAssertEqual(spec.evpn, EvpnDevices(vxlanDevice: "vxk100", bridgePort: "fe100"))
        XCTAssertEqual(spec.kind, .vxlan(vni: 100, local: InternetAddress("198.18.1.1")!, remotes: [], udpPort: 4789))
        let keyed = try PortSpec(type: "vxlan", options: ["vni": "100", "local": "198.18.1.1", "evpn": "vxk100",
                                                          "evpn_port": "fe100", "name": "vx", "vlan": "10"],
                                 text: "from a file")
        XCTAssertTrue(keyed.describesSamePort(as: spec))
        XCTAssertFalse(try PortSpec(parsing: "vxlan:100,local=198.18.1.1,name=vx,vlan=10").describesSamePort(as: spec))
        XCTAssertNil(try PortSpec(parsing: "vxlan:100,local=198.18.1.1").evpn)
        XCTAssertEqual(PortSpec.text(type: "vxlan", options: ["vni": "7", "local": "198.18.1.1", "evpn": "vxk7",
                                                              "evpn_port": "fe7"]),
                       "vxlan:7,local=198.18.1.1,evpn=vxk7,evpn_port=fe7")
    }

    func testRefusals() {
        let refused: [(String, String)] = [
            ("vxlan:1,local=198.18.1.1,evpn=vxk1", "evpn_port"),
            ("vxlan:1,local=198.18.1.1,evpn_port=fe1", "evpn"),
            ("vxlan:1,local=198.18.1.1,evpn=vxk1,evpn_port=vxk1", "evpn_port"),
            ("vxlan:1,local=198.18.1.1,evpn=a-name-far-too-long,evpn_port=fe1", "evpn"),
            ("vxlan:1,local=198.18.1.1,evpn=vx/1,evpn_port=fe1", "evpn"),
            ("vxlan:1,local=198.18.1.1,remote=198.18.2.1,evpn=vxk1,evpn_port=fe1", "remote"),
            ("vxlan:1,local=198.18.1.1,evpn=vxk1,evpn_port=fe1,trunk=10,20", "trunk"),
            ("tap:t0,evpn=vxk1,evpn_port=fe1", "evpn"),
        ]
        for (text, key) in refused {
            XCTAssertThrowsError(try PortSpec(parsing: text), text) { error in
                XCTAssertEqual((error as? PortSpec.ParseError)?.key, key, "\(text): \(error)")
            }
        }
    }
}
