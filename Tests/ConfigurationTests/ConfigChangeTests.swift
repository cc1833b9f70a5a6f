import Configuration
import Ports
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
}
