@testable import Engine
import Glibc
import Logging
import Model
import Platform
import Ports
import Switching
import TestSupport
import XCTest

/// An EVPN vxlan port's link with the kernel bridge table, against a real bridge in a
/// namespace of the test's own: `bridge fdb` plays zebra, installing remote MACs and flood
/// entries on the vxlan device and reading what Ferry writes on the bridge port.
final class EvpnKernelFDBTests: XCTestCase {
    private let vlan: UInt16 = 1
    private let index: PortIndex = 1
    private let local: PortIndex = 0
    private let remoteMAC: UInt64 = 0x0200_0018_6402
    private let localMAC: UInt64 = 0x0200_0018_6401

    private var namespace: NetworkSandbox.Namespace!

    override func setUpWithError() throws {
        try NetworkSandbox.requireTapSupport()
        namespace = try NetworkSandbox.Namespace("ferry-evpn-\(getpid())")
        try ip("link", "set", "lo", "up")
        try ip("link", "add", "under", "type", "veth", "peer", "name", "under1")
        try ip("addr", "add", "198.18.9.1/24", "dev", "under")
        try ip("link", "add", "br0", "type", "bridge")
        try ip("link", "add", "fe0", "type", "veth", "peer", "name", "fe1")
        try ip("link", "add", "vxk0", "type", "vxlan", "id", "100", "local", "198.18.9.1", "dstport", "47890",
               "nolearning")
        for link in ["fe0", "vxk0"] { try ip("link", "set", link, "master", "br0") }
        for link in ["under", "under1", "br0", "fe0", "fe1", "vxk0"] { try ip("link", "set", link, "up") }
    }

    override func tearDown() {
        namespace?.delete()
    }

    private func ip(_ arguments: String...) throws {
        try NetworkSandbox.run(NetworkSandbox.ipPath, ["-n", namespace.name] + arguments)
    }

    @discardableResult
    private func bridge(_ arguments: String...) throws -> String {
        try NetworkSandbox.run(NetworkSandbox.bridgePath, ["-n", namespace.name] + arguments)
    }

    /// Services `link` until `done` holds or two seconds passed; whether it held.
    private func serve(_ link: EvpnKernelFDB, until done: () -> Bool) -> Bool {
        let deadline = MonotonicClock.seconds() + 2
        while MonotonicClock.seconds() <= deadline {
            link.service(now: MonotonicClock.now())
            if done() { return true }
            usleep(10_000)
        }
        return done()
    }

    func testZebrasEntriesComeInAndLocalMACsGoOut() throws {
        let database = ForwardingDatabase(capacity: 64)
        let (port, link) = try namespace.enter { () -> (VxlanPort, EvpnKernelFDB) in
            let port = try VxlanPort(vni: 100, local: InternetAddress("198.18.9.1")!, remotes: [], udpPort: 4789,
                                     evpn: EvpnDevices(vxlanDevice: "vxk0", bridgePort: "fe0"), batchCapacity: 8)
            let link = EvpnKernelFDB(name: "vx", index: index, vlan: vlan, port: port, kernel: port.kernelFDB!,
                                     database: database, logger: Logger(label: "evpn-test"))
            return (port, link)
        }
        defer { link.close() }
        XCTAssertFalse(port.learnsSources)
        XCTAssertFalse(port.acceptsAnySender, "only VTEPs EVPN named")

        // A type-3 route and a type-2 route, as zebra installs them.
        try bridge("fdb", "append", "00:00:00:00:00:00", "dev", "vxk0", "dst", "198.18.9.2", "self", "permanent")
        try bridge("fdb", "add", "02:00:00:18:64:02", "dev", "vxk0", "dst", "198.18.9.2", "self", "extern_learn")
        let key = FDBKey(vlan: vlan, mac: remoteMAC)
        XCTAssertTrue(serve(link) { database.lookup(key) != nil })
        XCTAssertEqual(port.endpoints.address(1), InternetAddress("198.18.9.2"))
        XCTAssertTrue(port.endpoints.floods(1))
        XCTAssertEqual(database.lookupWithEndpoint(key)?.port, index)
        XCTAssertEqual(database.lookupWithEndpoint(key)?.endpoint, 1)
        XCTAssertEqual(database.entries(now: 0).first?.isPinnedRemote, true)

        // A MAC learned on a local port goes onto the bridge port, static; one gone comes off.
        database.learn(FDBKey(vlan: vlan, mac: localMAC), port: local, now: 0)
        XCTAssertTrue(serve(link) { (try? self.bridge("fdb", "show", "dev", "fe0"))?.contains("02:00:00:18:64:01 master br0 static") == true })
        database.remove(FDBKey(vlan: vlan, mac: localMAC))
        XCTAssertTrue(serve(link) { (try? self.bridge("fdb", "show", "dev", "fe0"))?.contains("02:00:00:18:64:01") == false })

        // Nonsense is refused and counted: a group MAC, another VNI's MAC, a VTEP that is this host.
        try bridge("fdb", "add", "01:00:5e:00:00:09", "dev", "vxk0", "dst", "198.18.9.2", "self")
        try bridge("fdb", "add", "02:00:00:18:64:03", "dev", "vxk0", "dst", "198.18.9.2", "vni", "200", "self")
        try bridge("fdb", "add", "02:00:00:18:64:04", "dev", "vxk0", "dst", "198.18.9.1", "self")
        XCTAssertTrue(serve(link) { port.kernelFDB!.counters.refused == 3 })
        XCTAssertEqual(database.counters.entries, 1, "nothing refused is in the table")

        // Withdrawals: the MAC leaves the table, the VTEP the flood list (not the port's table).
        try bridge("fdb", "del", "02:00:00:18:64:02", "dev", "vxk0", "self")
        try bridge("fdb", "del", "00:00:00:00:00:00", "dev", "vxk0", "dst", "198.18.9.2", "self")
        XCTAssertTrue(serve(link) { database.lookup(key) == nil && !port.endpoints.floods(1) })
        XCTAssertEqual(port.endpoints.count, 1)
    }

    /// A link built anew (the port set changed, or changes were lost) reads the whole table:
    /// a stale static entry on the bridge port goes, the database's local MACs go on, and a
    /// remote entry the kernel no longer has leaves the database.
    func testANewLinkPutsBothSidesInStep() throws {
        let database = ForwardingDatabase(capacity: 64)
        let port = try namespace.enter {
            try VxlanPort(vni: 100, local: InternetAddress("198.18.9.1")!, remotes: [], udpPort: 4789,
                          evpn: EvpnDevices(vxlanDevice: "vxk0", bridgePort: "fe0"), batchCapacity: 8)
        }
        try bridge("fdb", "add", "02:00:00:18:64:77", "dev", "fe0", "master", "static")
        database.learn(FDBKey(vlan: vlan, mac: localMAC), port: local, now: 0)
        let stale = FDBKey(vlan: vlan, mac: 0x0200_0018_6488)
        XCTAssertEqual(port.endpoints.append(InternetAddress("198.18.9.3")!), 1)
        XCTAssertTrue(database.addStatic(stale, port: index, endpoint: 1))
        let link = EvpnKernelFDB(name: "vx", index: index, vlan: vlan, port: port, kernel: port.kernelFDB!,
                                 database: database, logger: Logger(label: "evpn-test"))
        defer { link.close() }
        XCTAssertTrue(serve(link) {
            let shown = (try? self.bridge("fdb", "show", "dev", "fe0")) ?? ""
            return shown.contains("02:00:00:18:64:01 master br0 static") && !shown.contains("02:00:00:18:64:77")
        })
        XCTAssertNil(database.lookup(stale))
        port.kernelFDB!.removeAllLocal()
        XCTAssertFalse(try bridge("fdb", "show", "dev", "fe0").contains("static"))
    }
}
