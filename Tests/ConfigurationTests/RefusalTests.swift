import Configuration
import Ports
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
}
