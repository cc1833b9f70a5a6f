import Model
import XCTest

/// The keyed initializer the config file uses and the `--port` text form meet in one place.
final class PortSpecKeyedTests: XCTestCase {
    func testKeyedAndTextFormsGiveTheSamePort() throws {
        let pairs: [(String, [String: String], String)] = [
            ("vhost", ["path": "/a.sock", "client": "true", "queues": "2", "name": "vm0"], "vhost:/a.sock,client,queues=2,name=vm0"),
            ("vhost", ["path": "/a.sock", "client": "false"], "vhost:/a.sock,server"),
            ("tap", ["interface": "t0", "mtu": "9000", "vlan": "10"], "tap:t0,mtu=9000,vlan=10"),
            ("tap", ["interface": "t0", "offloads": "csum"], "tap:t0,offloads=csum"),
            ("vhost", ["path": "/a.sock", "offloads": "off"], "vhost:/a.sock,offloads=off"),
            ("xdp", ["interface": "eth0", "mode": "native", "zerocopy": "off", "trunk": "10,20-21"],
             "xdp:eth0,mode=native,zerocopy=off,trunk=10,20-21"),
            ("packet", ["interface": "eth0", "queues": "4"], "packet:eth0,queues=4"),
            ("gen", ["dst": "02:00:00:00:00:09", "size": "128", "count": "7"], "gen:dst=02:00:00:00:00:09,size=128,count=7"),
            ("sink", ["name": "s"], "sink:name=s"),
            ("tap", ["interface": "t0", "group_fwd_mask": "0x4008", "trunk": "10,20"],
             "tap:t0,trunk=10,20,group_fwd_mask=0x4008"),
            ("packet", ["interface": "eth0", "trunk": "10,20-21", "native": "21"], "packet:eth0,trunk=10,20-21,native=21"),
            // A comma inside a value is doubled; a first value holding '=' is written with its key.
            ("vhost", ["path": "/run/a,b.sock", "name": "x"], "vhost:/run/a,,b.sock,name=x"),
            ("vhost", ["path": "/run/a=b.sock", "client": "true"], "vhost:path=/run/a=b.sock,client"),
            ("vhost", ["path": "/run/a,", "trunk": "5"], "vhost:/run/a,,,trunk=5"),
        ]
        for (type, options, text) in pairs {
            let keyed = try PortSpec(type: type, options: options, text: PortSpec.text(type: type, options: options))
            let parsed = try PortSpec(parsing: text)
            XCTAssertTrue(keyed.describesSamePort(as: parsed), "\(type) \(options) vs \(text)")
            // The text a keyed spec shows is itself a --port spec for the same port.
            XCTAssertTrue(try PortSpec(parsing: keyed.text).describesSamePort(as: keyed), keyed.text)
        }
    }

    func testOffloadsAreOnUnlessTurnedDownAndOnlyVhostTapAndPacketTakeThem() throws {
        XCTAssertEqual(try PortSpec(parsing: "vhost:/a.sock").offloads, .on)
        XCTAssertEqual(try PortSpec(parsing: "tap:t0,offloads=off").offloads, .off)
        XCTAssertEqual(try PortSpec(parsing: "vhost:/a.sock,offloads=csum").offloads, .csum)
        XCTAssertFalse(try PortSpec(parsing: "tap:t0,offloads=off")
            .describesSamePort(as: try PortSpec(parsing: "tap:t0")))
        XCTAssertThrowsError(try PortSpec(parsing: "tap:t0,offloads=tso")) { error in
            XCTAssertEqual("\(error)", "port 'tap:t0,offloads=tso': offloads must be on, csum or off")
        }
        XCTAssertEqual(try PortSpec(parsing: "packet:eth0").offloads, .on)
        XCTAssertEqual(try PortSpec(parsing: "packet:eth0,offloads=off").offloads, .off)
        XCTAssertEqual(try PortSpec(type: "packet", options: ["interface": "eth0", "offloads": "csum"], text: "p").offloads,
                       .csum)
        XCTAssertThrowsError(try PortSpec(parsing: "xdp:eth0,offloads=off")) { error in
            XCTAssertEqual("\(error)", "port 'xdp:eth0,offloads=off': unknown option 'offloads'")
        }
    }

    func testVhostSocketAccess() throws {
        let spec = try PortSpec(parsing: "vhost:/a.sock,owner=qemu,group=kvm,mode=0660,name=vm0")
        let permissions = SocketPermissions(owner: "qemu", group: "kvm", mode: 0o660)
        XCTAssertEqual(spec.kind, .vhost(path: "/a.sock", client: false, queuePairs: 1, permissions: permissions))
        XCTAssertEqual(permissions.modeText, "0660")
        XCTAssertEqual(try PortSpec(parsing: "vhost:/a.sock").kind, .vhost(path: "/a.sock", client: false, queuePairs: 1))
        XCTAssertThrowsError(try PortSpec(parsing: "tap:t0,owner=qemu")) { error in
            XCTAssertEqual("\(error)", "port 'tap:t0,owner=qemu': unknown option 'owner'")
        }
    }

    func testErrorsNameTheirKey() {
        let cases: [(String, [String: String], String?, String)] = [
            ("vhost", [:], "path", "vhost needs a socket path"),
            ("vhost", ["path": "/a", "queues": "0"], "queues", "queues must be 1...128"),
            ("vhost", ["path": "/a", "client": "sometimes"], "client", "client must be true or false"),
            ("vhost", ["path": "/a", "mode": "8"], "mode", "mode '8' must be octal permission bits 0...0777 (e.g. 0660)"),
            ("vhost", ["path": "/a", "group": "a b"], "group", "group 'a b' must be a group name or number"),
            ("tap", ["interface": "a/b"], "interface", "interface name 'a/b' must be 1-15 letters, digits, '-', '_' or '.' (and not '.' or '..')"),
            ("sink", ["trunk": "5", "vlan": "5"], "trunk", "a port is either access (vlan=) or trunk (trunk=), not both"),
            ("sink", ["bogus": "1"], "bogus", "unknown option 'bogus'"),
            ("sink", ["trunk": "10,20", "native": "30"], "native", "native VLAN 30 must be one of the trunk's VLANs (10,20)"),
            ("sink", ["vlan": "10", "native": "10"], "native",
             "native= names a trunk's untagged VLAN and needs trunk= (an access port's vlan= is untagged already)"),
            ("sink", ["trunk": "10", "native": "0"], "native", "VLAN id '0' must be 1...4094"),
            ("sink", ["group_fwd_mask": "0x4002"], "group_fwd_mask",
             "group_fwd_mask must leave bit 1 (0x0002) clear: MAC control frames (PAUSE, 01:80:C2:00:00:01) are never forwarded"),
            ("sink", ["group_fwd_mask": "0x10000"], "group_fwd_mask",
             "group_fwd_mask must be 0x0000...0xffff or 0...65535, not '0x10000'"),
            ("bridge", [:], "type", "unknown port type 'bridge' (vhost, tap, packet, xdp, gen, sink, vxlan, virtio-user)"),
        ]
        for (type, options, key, problem) in cases {
            XCTAssertThrowsError(try PortSpec(type: type, options: options, text: "t")) { error in
                guard let error = error as? PortSpec.ParseError else { return XCTFail("\(error)") }
                XCTAssertEqual(error.key, key, problem)
                XCTAssertEqual(error.problem, problem)
            }
        }
    }

    func testGroupForwardMaskIsNoneUnlessGivenAndPartOfThePort() throws {
        XCTAssertEqual(try PortSpec(parsing: "tap:t0").groupForwardMask, .none)
        let lldp = try PortSpec(parsing: "tap:t0,group_fwd_mask=0x4000")
        XCTAssertEqual(lldp.groupForwardMask.bits, 0x4000)
        XCTAssertEqual(try PortSpec(parsing: "tap:t0,group_fwd_mask=16392").groupForwardMask.bits, 0x4008)
        XCTAssertFalse(lldp.describesSamePort(as: try PortSpec(parsing: "tap:t0")), "a reload replaces the port")
        XCTAssertEqual(PortSpec.text(type: "sink", options: ["group_fwd_mask": "0x4000", "name": "s"]),
                       "sink:group_fwd_mask=0x4000,name=s")
    }

    func testNativeIsATrunksUntaggedVLANAndPartOfThePort() throws {
        let spec = try PortSpec(parsing: "vhost:/a.sock,trunk=10,20,native=10,name=vm")
        XCTAssertEqual(spec.vlan, .trunk([10, 20], native: 10))
        XCTAssertEqual(spec.vlan.untaggedVLAN, 10)
        XCTAssertEqual(spec.vlan.description, "trunk 10,20 native 10")
        XCTAssertEqual(try PortSpec(parsing: "vhost:/a.sock,trunk=10,20").vlan.untaggedVLAN, nil)
        XCTAssertFalse(spec.describesSamePort(as: try PortSpec(parsing: "vhost:/a.sock,trunk=10,20,name=vm")))
    }
}
