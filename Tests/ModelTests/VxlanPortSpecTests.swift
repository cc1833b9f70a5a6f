import Model
import XCTest

/// `vxlan:VNI,local=IP[,remote=IP[+IP...]][,port=N][,via=PORTNAME]` as the command line and a config file give it.
final class VxlanPortSpecTests: XCTestCase {
    func testTheTextFormAndTheKeyedFormMeanTheSamePort() throws {
        let text = try PortSpec(parsing: "vxlan:100,local=198.18.1.1,remote=198.18.2.1+198.18.3.1,name=vx,trunk=10,20")
        XCTAssertEqual(text.kind, .vxlan(vni: 100, local: InternetAddress("198.18.1.1")!,
                                         remotes: [InternetAddress("198.18.2.1")!, InternetAddress("198.18.3.1")!],
                                         udpPort: 4789))
        XCTAssertEqual(text.vlan, .trunk([10, 20]))
        XCTAssertEqual(text.kindName, "vxlan")
        let keyed = try PortSpec(type: "vxlan", options: ["vni": "100", "local": "198.18.1.1",
                                                          "remote": "198.18.2.1+198.18.3.1", "name": "vx",
                                                          "trunk": "10,20"], text: "from a file")
        XCTAssertTrue(keyed.describesSamePort(as: text))
        XCTAssertEqual(PortSpec.text(type: "vxlan", options: ["vni": "7", "local": "198.18.1.1", "port": "8472"]),
                       "vxlan:7,local=198.18.1.1,port=8472")
        XCTAssertEqual(try PortSpec(parsing: "vxlan:7,local=198.18.1.1,port=8472").kind.claim,
                       "UDP port 8472 on 198.18.1.1")
    }

    func testIPv6AndNoRemotes() throws {
        let spec = try PortSpec(parsing: "vxlan:16777215,local=2001:db8::1")
        XCTAssertEqual(spec.kind, .vxlan(vni: 16_777_215, local: InternetAddress("2001:db8::1")!, remotes: [],
                                         udpPort: 4789))
        XCTAssertEqual(InternetAddress("2001:db8::1")?.description, "2001:db8::1")
        XCTAssertEqual(InternetAddress("198.18.0.9")?.description, "198.18.0.9")
    }

    func testViaNamesTheUplinkPort() throws {
        let spec = try PortSpec(parsing: "vxlan:100,local=198.18.1.1,remote=198.18.2.1,via=up")
        XCTAssertEqual(spec.underlay, "up")
        XCTAssertNil(try PortSpec(parsing: "vxlan:100,local=198.18.1.1").underlay)
        let keyed = try PortSpec(type: "vxlan", options: ["vni": "100", "local": "198.18.1.1", "remote": "198.18.2.1",
                                                          "via": "up"], text: "from a file")
        XCTAssertTrue(keyed.describesSamePort(as: spec))
        XCTAssertFalse(keyed.describesSamePort(as: try PortSpec(parsing: "vxlan:100,local=198.18.1.1,remote=198.18.2.1")))
    }

    func testBadVxlanSpecsSayWhatIsWrong() {
        let cases: [(String, String)] = [
            ("vxlan:", "vxlan needs a VNI"),
            ("vxlan:local=198.18.1.1", "vxlan needs a VNI"),
            ("vxlan:16777216,local=198.18.1.1", "VNI '16777216' must be 0...16777215"),
            ("vxlan:x,local=198.18.1.1", "VNI 'x' must be"),
            ("vxlan:5", "vxlan needs local=IP"),
            ("vxlan:5,local=host", "local 'host' is not an IPv4 or IPv6 address"),
            ("vxlan:5,local=198.18.1.1,remote=2001:db8::2", "must both be IPv4 or both IPv6"),
            ("vxlan:5,local=198.18.1.1,remote=198.18.2.1+198.18.2.1", "given twice or is the local address"),
            ("vxlan:5,local=198.18.1.1,remote=198.18.1.1", "given twice or is the local address"),
            ("vxlan:5,local=198.18.1.1,remote=198.18.2.1+", "remote '' is not"),
            ("vxlan:5,local=198.18.1.1,port=0", "port must be 1...65535"),
            ("vxlan:5,local=198.18.1.1,port=70000", "port must be 1...65535"),
            ("vxlan:5,local=198.18.1.1,via=", "via= names the xdp: port"),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try PortSpec(parsing: text), text) { error in
                XCTAssertTrue("\(error)".contains(message), "\(text): \(error)")
            }
        }
    }
}
