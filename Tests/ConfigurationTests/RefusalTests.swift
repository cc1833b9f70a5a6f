import Configuration
import Model
import XCTest

/// The validator `ferry run` and `ferry check` share: what it refuses in a whole config.
final class RefusalTests: XCTestCase {
    private func config(_ specs: [String]) throws -> FerryConfig {
        var config = FerryConfig()
        config.ports = try specs.map { try PortSpec(parsing: $0) }
        return config
    }

    func testAGoodConfigHasNoRefusals() throws {
        var c = try config(["vhost:/tmp/a.sock,name=a", "vhost:/tmp/b.sock,name=b", "sink:name=s"])
        c.control.path = "/tmp/ferry.sock"
        c.metrics.listen = "127.0.0.1:0"
        XCTAssertEqual(c.refusals(file: "f"), [])
    }

    func testNoPortsIsRefused() {
        XCTAssertEqual(FerryConfig().refusals(file: "f").map(\.message),
                       ["no ports: a switch needs at least one (ports: in the file, or --port)"])
    }

    func testDuplicateNamesAndSocketPathsAreRefused() throws {
        var c = try config(["vhost:/tmp/a.sock,name=a", "vhost:/tmp/a.sock,name=b", "sink:name=a",
                            "vhost:/tmp/c.sock,name=c"])
        c.control.path = "/tmp/c.sock"
        XCTAssertEqual(c.refusals(file: "f.yaml").map(\.description), [
            "f.yaml: two ports are named 'a'",
            "f.yaml: port 'b': socket /tmp/a.sock is already port 'a''s",
            "f.yaml: port 'c': socket /tmp/c.sock is already the control socket's",
        ])
    }

    func testAClientSocketIsNotBoundSoItMayBeShared() throws {
        let c = try config(["vhost:/tmp/a.sock,client,name=a", "vhost:/tmp/a.sock,client,name=b"])
        XCTAssertEqual(c.refusals(file: "f"), [])
    }

    func testUnknownUsersAndGroupsAreRefused() throws {
        var c = try config(["vhost:/tmp/a.sock,owner=no-such-user-ferry,name=a"])
        c.control.access.group = "no-such-group-ferry"
        let messages = c.refusals(file: "f").map(\.message)
        XCTAssertEqual(messages.count, 2, "\(messages)")
        XCTAssert(messages[0].hasPrefix("control socket: "), messages[0])
        XCTAssert(messages[1].hasPrefix("port 'a': "), messages[1])
    }

    func testAMetricsAddressRunCannotBindIsRefused() throws {
        var c = try config(["sink:name=s"])
        c.metrics.listen = "localhost:9469"
        XCTAssertEqual(c.refusals(file: "f").map(\.message), [MetricsSettings.listenProblem("localhost:9469")])
    }

    func testStaticEntriesNeedTheirPortAndAVLANItCarries() throws {
        var c = try config(["sink:name=a,vlan=10", "sink:name=t,trunk=10,20", "sink:name=n,trunk=10,20,native=20"])
        func entry(_ mac: String, _ port: String, _ vlan: UInt16? = nil, line: Int) -> StaticFDBEntry {
            StaticFDBEntry(mac: MACAddress(mac)!, port: port, vlan: vlan, line: line, column: 5)
        }
        c.staticEntries = [
            entry("52:54:00:00:00:01", "a", line: 10),        // VLAN 10, a's
            entry("52:54:00:00:00:02", "t", 20, line: 11),
            entry("52:54:00:00:00:03", "n", line: 12),        // the native VLAN, 20
            entry("52:54:00:00:00:04", "nope", line: 13),
            entry("52:54:00:00:00:05", "a", 20, line: 14),
            entry("52:54:00:00:00:06", "t", line: 15),
            entry("52:54:00:00:00:01", "t", 10, line: 16),    // the first entry's address and VLAN again
        ]
        XCTAssertEqual(c.refusals(file: "f.yaml").map(\.description), [
            "f.yaml:13:5: fdb: 52:54:00:00:00:04: no port is named 'nope'",
            "f.yaml:14:5: fdb: 52:54:00:00:00:05: port 'a' does not carry VLAN 20 (access 10)",
            "f.yaml:15:5: fdb: 52:54:00:00:00:06: port 't' is a trunk (trunk 10,20) with no native VLAN: give a vlan",
            "f.yaml:16:5: fdb: 52:54:00:00:00:01 vlan 10 is listed twice (also at line 10)",
        ])
        XCTAssertEqual(c.resolvedStaticEntries.map(\.description), [
            "52:54:00:00:00:01 vlan 10 on port a", "52:54:00:00:00:02 vlan 20 on port t",
            "52:54:00:00:00:03 vlan 20 on port n", "52:54:00:00:00:01 vlan 10 on port t",
        ])
    }
}
