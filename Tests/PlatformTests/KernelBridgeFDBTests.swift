import Glibc
import Model
@testable import Platform
import TestSupport
import XCTest

/// The kernel bridge FDB over rtnetlink: messages checked byte by byte, then
/// the real thing, a bridge with a vxlan device in a namespace of the test's own.
final class KernelBridgeFDBTests: XCTestCase {
    /// RTM_NEWNEIGH, AF_BRIDGE, ifindex 7, NUD_PERMANENT, NTF_SELF, then `attributes`.
    private func neighbourMessage(_ attributes: [UInt8], type: UInt16 = RTNetlink.newNeighbour,
                                  family: UInt8 = 7) -> [UInt8] {
        let length = 16 + 12 + attributes.count
        var bytes: [UInt8] = [UInt8(length & 0xFF), UInt8(length >> 8), 0, 0, UInt8(type), 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0]
        bytes += [family, 0, 0, 0, 7, 0, 0, 0, 0x80, 0, 0x02, 0]
        return bytes + attributes
    }

    private let lladdr: [UInt8] = [10, 0, 2, 0, 0x02, 0, 0, 0x18, 0x64, 0x05, 0, 0]
    private let dst: [UInt8] = [8, 0, 1, 0, 198, 18, 2, 1]

    private func parsed(_ bytes: [UInt8]) -> Result<BridgeNeighbour?, NetlinkInputError> {
        switch RTNetlink.messages(in: bytes[...]) {
        case .failure(let error): return .failure(error)
        case .success(let messages):
            XCTAssertEqual(messages.count, 1)
            return BridgeNeighbour.parse(messages[0])
        }
    }

    func testARemoteMACWithItsVTEP() throws {
        let entry = try XCTUnwrap(try parsed(neighbourMessage(lladdr + dst + [8, 0, 7, 0, 100, 0, 0, 0])).get())
        XCTAssertEqual(entry, BridgeNeighbour(change: .added, interfaceIndex: 7, mac: 0x0200_0018_6405,
                                              destination: InternetAddress("198.18.2.1"), vni: 100,
                                              state: RTNetlink.nudPermanent, flags: RTNetlink.ntfSelf))
        XCTAssertTrue(entry.isDeviceOwn)
        XCTAssertFalse(entry.isFloodEntry)
        // An IPv6 VTEP, and a removal.
        let v6: [UInt8] = [20, 0, 1, 0] + [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1]
        let removed = try XCTUnwrap(try parsed(neighbourMessage(lladdr + v6, type: RTNetlink.deleteNeighbour)).get())
        XCTAssertEqual(removed.destination, InternetAddress("2001:db8::1"))
        XCTAssertEqual(removed.change, .removed)
    }

    func testOtherFamiliesAndTypesAreNoneOfOurs() throws {
        XCTAssertNil(try parsed(neighbourMessage(lladdr, family: 2)).get(), "an ARP entry")
        XCTAssertNil(try parsed(neighbourMessage(lladdr, type: 16)).get(), "RTM_NEWLINK")
    }

    func testEveryBadMessageHasItsReason() {
        XCTAssertEqual(parsed(neighbourMessage(dst)), .failure(.noAddress))
        XCTAssertEqual(parsed(neighbourMessage([8, 0, 2, 0, 1, 2, 3, 4])), .failure(.badAttributeSize(type: 2, length: 4)))
        XCTAssertEqual(parsed(neighbourMessage(lladdr + [7, 0, 1, 0, 198, 18, 2, 0])),
                       .failure(.badAttributeSize(type: 1, length: 3)))
        XCTAssertEqual(parsed(neighbourMessage(lladdr + [40, 0, 1, 0, 198, 18, 2, 1])),
                       .failure(.truncatedAttribute(type: 1, length: 40)))
        XCTAssertEqual(parsed(neighbourMessage(lladdr + [2, 0, 1, 0])), .failure(.truncatedAttribute(type: 1, length: 2)))
        XCTAssertEqual(parsed(neighbourMessage(lladdr + [6, 0, 7, 0, 1, 0, 0, 0])),
                       .failure(.badAttributeSize(type: 7, length: 2)))
        // The header: too short for an ndmsg, a length beyond what arrived, a stub.
        var short = neighbourMessage([])
        short.removeLast(4)
        short[0] = UInt8(short.count)
        XCTAssertEqual(parsed(short), .failure(.truncatedHeader(8)))
        var long = neighbourMessage(lladdr)
        long[0] = 200
        XCTAssertEqual(parsed(long), .failure(.badMessageLength(200, available: long.count)))
        XCTAssertEqual(parsed([1, 2, 3, 4, 5]), .failure(.truncatedHeader(5)))
        var tiny = neighbourMessage(lladdr)
        tiny[0] = 4
        XCTAssertEqual(parsed(tiny), .failure(.badMessageLength(4, available: tiny.count)))
    }

    func testTwoMessagesInOneDatagram() throws {
        let one = neighbourMessage(lladdr + dst)
        let messages = try RTNetlink.messages(in: (one + one)[...]).get()
        XCTAssertEqual(messages.count, 2)
        XCTAssertEqual(try BridgeNeighbour.parse(messages[1]).get()?.destination, InternetAddress("198.18.2.1"))
    }

    func testARequestParsesBackToItsEntry() throws {
        let entry = BridgeNeighbour(change: .added, interfaceIndex: 12, mac: 0x0200_0018_6401, state: RTNetlink.nudNoARP,
                                    flags: RTNetlink.ntfMaster)
        let request = entry.request(sequence: 5)
        XCTAssertEqual(request.count, 40)
        let messages = try RTNetlink.messages(in: request[...]).get()
        XCTAssertEqual(messages.first?.sequence, 5)
        XCTAssertEqual(try BridgeNeighbour.parse(messages[0]).get(), entry)
    }

    /// A bridge with a port (a veth) and a vxlan device, as an EVPN host has them:
    /// Ferry's local MAC goes onto the port as a static entry; entries a control plane
    /// installs on the vxlan device (a remote MAC, the flood list) arrive as changes
    /// and are in a dump.
    func testLocalMACsGoInAndTheVxlanDevicesEntriesComeOut() throws {
        try NetworkSandbox.requireTapSupport()
        let namespace = try NetworkSandbox.Namespace("ferry-fdb-\(getpid())")
        defer { namespace.delete() }
        func ip(_ arguments: String...) throws { try NetworkSandbox.run(NetworkSandbox.ipPath, ["-n", namespace.name] + arguments) }
        func bridge(_ arguments: String...) throws -> String {
            try NetworkSandbox.run(NetworkSandbox.bridgePath, ["-n", namespace.name] + arguments)
        }
        try ip("link", "add", "br0", "type", "bridge")
        try ip("link", "add", "fe0", "type", "veth", "peer", "name", "fe1")
        try ip("link", "add", "vxk0", "type", "vxlan", "id", "100", "local", "198.18.7.1", "dstport", "4790", "nolearning")
        for link in ["fe0", "vxk0"] { try ip("link", "set", link, "master", "br0") }
        for link in ["br0", "fe0", "fe1", "vxk0"] { try ip("link", "set", link, "up") }

        let fdb = try namespace.enter { try KernelBridgeFDB(devices: EvpnDevices(vxlanDevice: "vxk0", bridgePort: "fe0")) }
        try fdb.addLocal(mac: 0x0200_0018_6401)
        try fdb.addLocal(mac: 0x0200_0018_6401)
        XCTAssertTrue(try bridge("fdb", "show", "dev", "fe0").contains("02:00:00:18:64:01 master br0 static"))

        try _ = bridge("fdb", "append", "00:00:00:00:00:00", "dev", "vxk0", "dst", "198.18.7.2", "self", "permanent")
        try _ = bridge("fdb", "add", "02:00:00:18:64:02", "dev", "vxk0", "dst", "198.18.7.2", "self", "extern_learn")
        var changes: [BridgeNeighbour] = []
        for _ in 0..<50 where changes.count < 2 {
            let (entries, overrun) = fdb.receiveChanges()
            XCTAssertFalse(overrun)
            for result in entries {
                if let entry = try result.get(), entry.interfaceIndex == fdb.vxlanIndex, entry.isDeviceOwn {
                    changes.append(entry)
                }
            }
            usleep(20_000)
        }
        let vtep = InternetAddress("198.18.7.2")
        XCTAssertEqual(changes.map(\.mac), [0, 0x0200_0018_6402])
        XCTAssertEqual(changes.map(\.destination), [vtep, vtep])
        XCTAssertTrue(changes[0].isFloodEntry)

        let dump = try fdb.dump().compactMap { try $0.get() }
        XCTAssertTrue(dump.contains { $0.interfaceIndex == fdb.vxlanIndex && $0.mac == 0x0200_0018_6402 && $0.destination == vtep })
        XCTAssertTrue(dump.contains { $0.interfaceIndex == fdb.bridgePortIndex && $0.mac == 0x0200_0018_6401
                && $0.state & RTNetlink.nudNoARP != 0 })

        try fdb.removeLocal(mac: 0x0200_0018_6401)
        try fdb.removeLocal(mac: 0x0200_0018_6401)  // gone already: no error
        XCTAssertFalse(try bridge("fdb", "show", "dev", "fe0").contains("02:00:00:18:64:01"))
        try fdb.addLocal(mac: 0x0200_0018_6403)
        fdb.removeAllLocal()
        XCTAssertFalse(try bridge("fdb", "show", "dev", "fe0").contains("static"))
    }
}
