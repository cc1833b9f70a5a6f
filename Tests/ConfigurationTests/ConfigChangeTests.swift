import Configuration
import Model
import XCTest

final class ConfigChangeTests: XCTestCase {
    private func config(_ ports: [String], workers: Int = 1) throws -> FerryConfig {
        var c = FerryConfig()
        c.ports = try ports.map { try PortSpec(parsing: $0) }
        c.switchSettings.workers = workers
        return c
    }

    func testSameConfigIsNoChange() throws {
        let a = try config(["sink:name=s", "vhost:/a.sock,name=vm0"])
        XCTAssertTrue(ConfigChange(from: a, to: a).isEmpty)
    }

    func testSpellingDoesNotCountAsChange() throws {
        let a = try config(["sink:name=s,trunk=10,11,12"])
        let b = try config(["sink:trunk=10-12,name=s"])
        XCTAssertTrue(ConfigChange(from: a, to: b).isEmpty)
    }

    func testAddedRemovedAndChangedPorts() throws {
        let a = try config(["sink:name=s", "vhost:/a.sock,name=vm0", "sink:name=old"])
        let b = try config(["sink:name=s", "vhost:/a.sock,queues=2,name=vm0", "sink:name=new", "sink:name=new2"])
        let change = ConfigChange(from: a, to: b)
        XCTAssertEqual(change.removedPorts, ["vm0", "old"])
        XCTAssertEqual(change.changedPorts, ["vm0"])
        XCTAssertEqual(change.addedPorts.map(\.name), ["vm0", "new", "new2"])
        XCTAssertEqual(change.addedPorts[0].kind, .vhost(path: "/a.sock", client: false, queuePairs: 2))
        XCTAssertEqual(change.restartOnlySettings, [])
    }

    func testVLANOrSocketAccessChangeReplacesThePort() throws {
        let a = try config(["sink:name=s", "vhost:/a.sock,name=vm0"])
        let b = try config(["sink:name=s,vlan=5", "vhost:/a.sock,name=vm0,mode=0600"])
        let change = ConfigChange(from: a, to: b)
        XCTAssertEqual(change.changedPorts, ["s", "vm0"])
        XCTAssertEqual(change.removedPorts, ["s", "vm0"])
    }

    func testSettingsThatNeedARestartAreNamed() throws {
        let a = try config(["sink:name=s"])
        var b = try config(["sink:name=s"], workers: 2)
        b.switchSettings.logLevel = .debug
        b.control.path = "/tmp/other.sock"
        b.control.access.group = "kvm"
        b.metrics.listen = "127.0.0.1:9469"
        let change = ConfigChange(from: a, to: b)
        XCTAssertEqual(change.restartOnlySettings,
                       ["switch.workers", "switch.log_level", "control.path", "control.group", "metrics.listen"])
        XCTAssertTrue(change.addedPorts.isEmpty)
        XCTAssertTrue(change.removedPorts.isEmpty)
        XCTAssertFalse(change.isEmpty)
    }

    func testEverythingReplaced() throws {
        let change = ConfigChange(from: try config(["sink:name=a"]), to: try config(["sink:name=b"]))
        XCTAssertEqual(change.removedPorts, ["a"])
        XCTAssertEqual(change.addedPorts.map(\.name), ["b"])
        XCTAssertEqual(change.changedPorts, [])
    }

    func testStaticEntriesFollowTheFileAndTheirPorts() throws {
        func entry(_ mac: String, _ port: String) -> StaticFDBEntry { StaticFDBEntry(mac: MACAddress(mac)!, port: port) }
        var a = try config(["sink:name=s", "sink:name=t", "sink:name=u"])
        a.staticEntries = [entry("52:54:00:00:00:01", "s"), entry("52:54:00:00:00:02", "t"),
                           entry("52:54:00:00:00:03", "u"), entry("52:54:00:00:00:04", "s")]
        XCTAssertTrue(ConfigChange(from: a, to: a).isEmpty)
        // t is replaced (a VLAN), so its entry comes back with it; 03 moves to s; 04 goes; 05 is new.
        var b = try config(["sink:name=s", "sink:name=t,vlan=1,group_fwd_mask=0x4000", "sink:name=u"])
        b.staticEntries = [entry("52:54:00:00:00:01", "s"), entry("52:54:00:00:00:02", "t"),
                           entry("52:54:00:00:00:03", "s"), entry("52:54:00:00:00:05", "u")]
        let change = ConfigChange(from: a, to: b)
        XCTAssertEqual(change.changedPorts, ["t"])
        XCTAssertEqual(change.removedStaticEntries.map(\.description), ["52:54:00:00:00:04 vlan 1 on port s"])
        XCTAssertEqual(change.addedStaticEntries.map(\.description), [
            "52:54:00:00:00:02 vlan 1 on port t", "52:54:00:00:00:03 vlan 1 on port s", "52:54:00:00:00:05 vlan 1 on port u",
        ])
        XCTAssertFalse(change.isEmpty)
    }
}
