import Configuration
import XCTest

/// Each broken config and the exact message `ferry check` prints for it.
final class BrokenConfigTests: XCTestCase {
    private func assertRefused(_ yaml: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try FerryConfig(yaml: yaml, file: "f.yaml"), file: file, line: line) { error in
            XCTAssertEqual("\(error)", expected, file: file, line: line)
        }
    }

    func testYAMLSyntaxError() {
        assertRefused("""
            ports:
              - name: a
                type: sink
               bad: [
            """, "f.yaml:4:4: invalid YAML: did not find expected '-' indicator (while parsing a block collection at line 2, column 3)")
    }

    func testKeyGivenTwice() {
        assertRefused("""
            ports:
              - name: a
                type: sink
                name: b
            """, "f.yaml:2:5: key 'name' given twice in one mapping")
    }

    func testEmptyFile() {
        assertRefused("# nothing but a comment\n",
                      "f.yaml:1:1: the file is empty (expected a mapping with keys switch, control, metrics, ports, fdb)")
    }

    func testTopLevelList() {
        assertRefused("- sink\n", "f.yaml:1:1: the file must be a mapping with keys switch, control, metrics, ports, fdb, not a list")
    }

    func testUnknownTopLevelKey() {
        assertRefused("""
            switchh: {}
            ports: [{name: a, type: sink}]
            """, "f.yaml:1:1: unknown key 'switchh' (expected one of: switch, control, metrics, ports, fdb)")
    }

    func testNoPortsKey() {
        assertRefused("switch: {workers: 2}\n", "f.yaml:1:1: missing key 'ports' (a switch needs at least one port)")
    }

    func testEmptyPorts() {
        assertRefused("ports: []\n", "f.yaml:1:8: ports must hold at least one port")
    }

    func testPortsNotAList() {
        assertRefused("ports: {a: 1}\n", "f.yaml:1:8: ports must be a list of ports, not a mapping")
    }

    func testUnknownPortKey() {
        assertRefused("""
            ports:
              - name: vm0
                type: vhost
                path: /run/vm0.sock
                qeues: 2
            """, "f.yaml:5:5: port 'vm0': unknown key 'qeues' (expected one of: name, type, path, client, queues, owner, group, mode, offloads, vlan, trunk, native, group_fwd_mask)")
    }

    func testMissingName() {
        assertRefused("""
            ports:
              - type: tap
                interface: t0
            """, "f.yaml:2:5: ports[0]: missing key 'name'")
    }

    func testMissingType() {
        assertRefused("""
            ports:
              - name: a
            """, "f.yaml:2:5: port 'a': missing key 'type' (one of: vhost, tap, packet, xdp, gen, sink, vxlan, virtio-user)")
    }

    func testMissingInterface() {
        assertRefused("""
            ports:
              - name: a
                type: tap
            """, "f.yaml:2:5: port 'a': missing key 'interface': tap needs an interface name")
    }

    func testDuplicateName() {
        assertRefused("""
            ports:
              - name: a
                type: sink
              - name: a
                type: sink
            """, "f.yaml:4:11: port 'a': name already used by the port at line 2")
    }

    func testQueuesWrongType() {
        assertRefused("""
            ports:
              - name: a
                type: vhost
                path: /a.sock
                queues: two
            """, "f.yaml:5:13: port 'a': queues must be 1...128")
        assertRefused("""
            ports:
              - name: a
                type: vhost
                path: /a.sock
                queues: [2]
            """, "f.yaml:5:13: port 'a': queues must be a single value, not a list")
    }

    func testVLANAndTrunkBoth() {
        assertRefused("""
            ports:
              - name: a
                type: sink
                vlan: 3
                trunk: [4, 5]
            """, "f.yaml:5:12: port 'a': a port is either access (vlan=) or trunk (trunk=), not both")
    }

    func testVLANOutOfRange() {
        assertRefused("""
            ports:
              - name: a
                type: sink
                vlan: 4095
            """, "f.yaml:4:11: port 'a': VLAN id '4095' must be 1...4094")
        assertRefused("""
            ports:
              - name: a
                type: sink
                trunk: [10, 0-5]
            """, "f.yaml:4:12: port 'a': VLAN id '0' must be 1...4094")
    }

    func testStaticEntryShapes() {
        assertRefused("""
            ports: [{name: a, type: sink}]
            fdb:
              - {mac: 52:54:00:12:34:zz, port: a}
              - {mac: 01:00:5e:00:00:01, port: a}
              - {mac: 00:00:00:00:00:00, port: a}
              - {mac: 52:54:00:12:34:56, port: a, vlan: 4095}
              - {mac: 52:54:00:12:34:56}
              - {mac: 52:54:00:12:34:56, port: a, age: 3}
            """, [
                "f.yaml:3:11: fdb[0]: mac '52:54:00:12:34:zz' is not a MAC address (six hex pairs, aa:bb:cc:dd:ee:ff)",
                "f.yaml:4:11: fdb[1]: 01:00:5e:00:00:01 is a group address; a static entry names one station",
                "f.yaml:5:11: fdb[2]: 00:00:00:00:00:00 is the null address",
                "f.yaml:6:45: fdb[3]: vlan must be a VLAN id 1...4094, not '4095'",
                "f.yaml:7:5: fdb[4]: missing key 'port'",
                "f.yaml:8:39: fdb[5]: unknown key 'age' (expected one of: mac, port, vlan)",
            ].joined(separator: "\n"))
        assertRefused("""
            ports: [{name: a, type: sink}]
            fdb: {mac: 52:54:00:12:34:56, port: a}
            """, "f.yaml:2:6: fdb must be a list of static entries ({mac, port, vlan}), not a mapping")
    }

    func testNativeVLANTheTrunkDoesNotCarry() {
        assertRefused("""
            ports:
              - name: a
                type: sink
                trunk: [10, 20]
                native: 30
            """, "f.yaml:5:13: port 'a': native VLAN 30 must be one of the trunk's VLANs (10,20)")
    }

    func testGroupForwardMaskWithThePauseBit() {
        assertRefused("""
            ports:
              - name: a
                type: sink
                group_fwd_mask: 0x4002
            """, "f.yaml:4:21: port 'a': group_fwd_mask must leave bit 1 (0x0002) clear: "
                + "MAC control frames (PAUSE, 01:80:C2:00:00:01) are never forwarded")
    }

    func testUnknownPortType() {
        assertRefused("""
            ports:
              - name: a
                type: bridge
            """, "f.yaml:3:11: port 'a': unknown port type 'bridge' (vhost, tap, packet, xdp, gen, sink, vxlan, virtio-user)")
    }

    func testBadXdpModeAndZeroCopy() {
        assertRefused("""
            ports:
              - name: up
                type: xdp
                interface: eth0
                mode: fast
            """, "f.yaml:5:11: port 'up': mode must be auto, native or generic")
        assertRefused("""
            ports:
              - name: up
                type: xdp
                interface: eth0
                zerocopy: maybe
            """, "f.yaml:5:15: port 'up': zerocopy must be auto, on or off")
    }

    func testBadSocketMode() {
        assertRefused("""
            ports:
              - name: vm0
                type: vhost
                path: /a.sock
                mode: "0999"
            """, "f.yaml:5:11: port 'vm0': mode '0999' must be octal permission bits 0...0777 (e.g. 0660)")
    }

    func testNegativeWorkers() {
        assertRefused("""
            switch:
              workers: -1
            ports: [{name: a, type: sink}]
            """, "f.yaml:2:12: switch: workers must be a whole number 1...64, not '-1'")
    }

    func testCPUsNotAList() {
        assertRefused("""
            switch:
              cpus: {first: 1}
            ports: [{name: a, type: sink}]
            """, "f.yaml:2:9: switch: cpus must be a list of CPU numbers or a string like \"0,2-3\", not a mapping")
        assertRefused("""
            switch:
              cpus: "0,x"
            ports: [{name: a, type: sink}]
            """, "f.yaml:2:9: switch: cpus: 'x' is not a CPU number or range (e.g. 0,2-3)")
    }

    func testUnknownLogLevel() {
        assertRefused("""
            switch: {log_level: loud}
            ports: [{name: a, type: sink}]
            """, "f.yaml:1:21: switch: log_level must be one of trace, debug, info, notice, warning, error, critical, not 'loud'")
    }

    func testUnknownIdlePolicy() {
        assertRefused("""
            switch: {idle: fast}
            ports: [{name: a, type: sink}]
            """, "f.yaml:1:16: switch: idle must be one of poll, adaptive, sleep, not 'fast'")
    }

    func testUnknownWakePriority() {
        assertRefused("""
            switch: {wake_priority: high}
            ports: [{name: a, type: sink}]
            """, "f.yaml:1:25: switch: wake_priority must be one of normal, realtime, not 'high'")
    }

    func testControlAndMetrics() {
        assertRefused("""
            control:
              owner: "-x"
            ports: [{name: a, type: sink}]
            """, "f.yaml:2:10: control: owner '-x' must be a user name or number")
        assertRefused("""
            metrics: {listen: 9469}
            ports: [{name: a, type: sink}]
            """, "f.yaml:1:19: metrics: '9469' is not IPV4:PORT or [IPV6]:PORT with a numeric address and a port "
            + "0...65535 (e.g. 127.0.0.1:9469 or [::1]:9469; a name such as localhost is not looked up)")
        // What the metrics server cannot bind, the file refuses: a name is not looked up.
        assertRefused("""
            metrics: {listen: "localhost:9469"}
            ports: [{name: a, type: sink}]
            """, "f.yaml:1:19: metrics: 'localhost:9469' is not IPV4:PORT or [IPV6]:PORT with a numeric address and a port "
            + "0...65535 (e.g. 127.0.0.1:9469 or [::1]:9469; a name such as localhost is not looked up)")
    }

    /// Port 0 (the kernel picks one, logged at start) is what --metrics takes, so the file takes it too.
    func testMetricsPortZeroIsAccepted() throws {
        let config = try FerryConfig(yaml: "metrics: {listen: \"127.0.0.1:0\"}\nports: [{name: a, type: sink}]\n", file: "f.yaml")
        XCTAssertEqual(config.metrics.listen, "127.0.0.1:0")
    }

    /// One pass reports every mistake, in file order.
    func testEveryErrorIsReported() {
        assertRefused("""
            switch:
              batch: 8
            ports:
              - name: a
                type: gen
                size: 10
              - name: b
                type: sink
                vlan: 0
            """, """
            f.yaml:2:10: switch: batch must be a whole number 32...256, not '8'
            f.yaml:6:11: port 'a': size must be 60...9000, a list of them (64/570/1518) or imix
            f.yaml:9:11: port 'b': VLAN id '0' must be 1...4094
            """)
    }

    func testUnreadableFile() {
        XCTAssertThrowsError(try FerryConfig.load(path: "/nonexistent/ferry.yaml")) { error in
            XCTAssertEqual("\(error)", "/nonexistent/ferry.yaml: cannot read the file: No such file or directory")
        }
    }
}
