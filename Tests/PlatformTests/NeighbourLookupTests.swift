import Glibc
import Model
@testable import Platform
import TestSupport
import XCTest

/// Routes and neighbour entries read back over rtnetlink, in a namespace of
/// the test's own with a veth, a route through a gateway and permanent
/// neighbour entries (`ip neigh add ... nud permanent`). Needs root.
final class NeighbourLookupTests: XCTestCase {
    private var namespace: NetworkSandbox.Namespace!

    override func setUpWithError() throws {
        try NetworkSandbox.requireTapSupport()
        namespace = try NetworkSandbox.Namespace("ferry-neigh-\(getpid())")
        try namespace.ip("link", "add", "up0", "type", "veth", "peer", "name", "up1")
        try namespace.ip("addr", "add", "198.18.51.1/24", "dev", "up0")
        try namespace.ip("addr", "add", "2001:db8:51::1/64", "dev", "up0", "nodad")
        try namespace.ip("link", "set", "up0", "up")
        try namespace.ip("link", "set", "up1", "up")
        try namespace.ip("route", "add", "198.18.52.0/24", "via", "198.18.51.254")
        try namespace.ip("neigh", "add", "198.18.51.254", "lladdr", "02:00:00:18:51:fe", "dev", "up0", "nud", "permanent")
        try namespace.ip("neigh", "add", "2001:db8:51::2", "lladdr", "02:00:00:18:51:02", "dev", "up0", "nud", "permanent")
    }

    override func tearDown() {
        namespace?.delete()
    }

    func testTheNextHopAndItsMACComeFromTheKernelsTables() throws {
        try namespace.enter {
            let lookup = try NeighbourLookup()
            let index = Int32(if_nametoindex("up0"))
            XCTAssertGreaterThan(index, 0)
            let routed = try lookup.nextHop(to: InternetAddress("198.18.52.7")!)
            XCTAssertEqual(routed, NeighbourLookup.NextHop(address: InternetAddress("198.18.51.254")!, interfaceIndex: index))
            let gateway = try XCTUnwrap(try lookup.neighbour(routed.address, interfaceIndex: index))
            XCTAssertEqual(gateway.mac, 0x0200_0018_51fe)
            XCTAssertFalse(gateway.isStale)

            let connected = try lookup.nextHop(to: InternetAddress("198.18.51.9")!)
            XCTAssertEqual(connected.address, InternetAddress("198.18.51.9")!, "on the subnet: the address itself")
            XCTAssertNil(try lookup.neighbour(connected.address, interfaceIndex: index), "no entry yet")

            let v6 = try lookup.nextHop(to: InternetAddress("2001:db8:51::2")!)
            XCTAssertEqual(v6.interfaceIndex, index)
            XCTAssertEqual(try lookup.neighbour(v6.address, interfaceIndex: index)?.mac, 0x0200_0018_5102)

            XCTAssertThrowsError(try lookup.nextHop(to: InternetAddress("203.0.113.1")!), "no route there")
        }
    }
}
