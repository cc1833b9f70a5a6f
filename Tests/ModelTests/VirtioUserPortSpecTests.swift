import Model
import XCTest

/// `virtio-user:PATH[,server][,queue_size=N]` as the command line and a config file give it.
final class VirtioUserPortSpecTests: XCTestCase {
    func testTheTextFormAndTheKeyedFormMeanTheSamePort() throws {
        let client = try PortSpec(parsing: "virtio-user:/run/dut-a.sock,name=a,vlan=10")
        XCTAssertEqual(client.kind, .virtioUser(path: "/run/dut-a.sock", server: false, queueSize: 256))
        XCTAssertEqual(client.kindName, "virtio-user")
        XCTAssertNil(client.kind.claim, "a client's socket is the back-end's")
        let server = try PortSpec(parsing: "virtio-user:/run/b.sock,server,queue_size=1024")
        XCTAssertEqual(server.kind, .virtioUser(path: "/run/b.sock", server: true, queueSize: 1024))
        XCTAssertEqual(server.kind.claim, "socket /run/b.sock")
        let keyed = try PortSpec(type: "virtio-user", options: ["path": "/run/b.sock", "server": "true",
                                                                "queue_size": "1024"], text: "from a file")
        XCTAssertTrue(keyed.describesSamePort(as: server))
        XCTAssertEqual(PortSpec.text(type: "virtio-user", options: ["path": "/run/b.sock", "server": "true"]),
                       "virtio-user:/run/b.sock,server")
    }

    func testBadVirtioUserSpecsSayWhatIsWrong() {
        let cases: [(String, String)] = [
            ("virtio-user:", "virtio-user needs a socket path"),
            ("virtio-user:/a.sock,queue_size=100", "queue_size must be a power of two in 16...4096"),
            ("virtio-user:/a.sock,queue_size=8192", "queue_size must be a power of two"),
            ("virtio-user:/a.sock,client", "unknown option 'client'"),
            ("virtio-user:/a.sock,queues=2", "unknown option 'queues'"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try PortSpec(parsing: text), text) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(text): \(error)")
            }
        }
    }
}
