import Model
import Packets
import Switching
import XCTest

/// A frame's first bytes: destination, source, then either an EtherType or a tag and one.
private func frame(destination: UInt64 = 0x0200_0000_0002, source: UInt64 = 0x0200_0000_0001,
                   tag: UInt16? = nil, tpid: UInt16 = 0x8100, etherType: UInt16 = 0x0800) -> [UInt8] {
    var bytes: [UInt8] = []
    for shift in stride(from: 40, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: destination >> UInt64(shift))) }
    for shift in stride(from: 40, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: source >> UInt64(shift))) }
    if let tag {
        bytes += [UInt8(tpid >> 8), UInt8(tpid & 0xFF), UInt8(tag >> 8), UInt8(tag & 0xFF)]
    }
    bytes += [UInt8(etherType >> 8), UInt8(etherType & 0xFF)]
    return bytes + [UInt8](repeating: 0, count: 46)
}

final class PortIngressTests: XCTestCase {
    /// VLANs 10 and 20; port 1 is in both, port 2 only in 20.
    private let forwarder: Forwarder = {
        let f = Forwarder(database: ForwardingDatabase(capacity: 16))
        f.setMembers(PortSet([1, 3]), vlan: 10)
        f.setMembers(PortSet([1, 2]), vlan: 20)
        return f
    }()

    private func verdict(_ bytes: [UInt8], length: Int? = nil, port: PortIndex = 1, ingress: PortIngress) -> IngressVerdict {
        bytes.withUnsafeBytes { raw in
            ingress.admit(EthernetHeader(at: raw.baseAddress!), at: raw.baseAddress!, length: length ?? bytes.count,
                          port: port, members: forwarder)
        }
    }

    func testReadsAddressesAndEtherTypeFromTheFirstFourteenBytes() {
        let bytes = frame(destination: 0x0180_C200_000E, source: 0x5254_0012_3456, etherType: 0x88CC)
        let header = bytes.withUnsafeBytes { EthernetHeader(at: $0.baseAddress!) }
        XCTAssertEqual(header, EthernetHeader(destination: 0x0180_C200_000E, source: 0x5254_0012_3456, etherType: 0x88CC))
        XCTAssertFalse(header.isTagged)
        XCTAssertFalse(header.hasGroupSource)
    }

    func testTheTagsVLANIsItsLowTwelveBits() {
        let bytes = frame(tag: 0xE000 | 20)
        XCTAssertTrue(bytes.withUnsafeBytes { EthernetHeader(at: $0.baseAddress!) }.isTagged)
        XCTAssertEqual(bytes.withUnsafeBytes { EthernetHeader.taggedVLAN(at: $0.baseAddress!) }, 20,
                       "the priority bits are not the VLAN")
    }

    func testAnAccessPortPutsUntaggedFramesInItsVLANAndRefusesTaggedOnes() {
        let access = PortIngress(vlan: .access(10))
        XCTAssertEqual(verdict(frame(), ingress: access), .admitted(vlan: 10))
        XCTAssertEqual(verdict(frame(tag: 10), ingress: access), .dropped(.vlanFiltered))
    }

    func testATrunkAdmitsTaggedFramesOfItsVLANsOnly() {
        let trunk = PortIngress(vlan: .trunk([10, 20]))
        XCTAssertEqual(verdict(frame(tag: 20), ingress: trunk), .admitted(vlan: 20))
        XCTAssertEqual(verdict(frame(tag: 10), port: 2, ingress: trunk), .dropped(.vlanFiltered),
                       "port 2 is not a member of VLAN 10")
        XCTAssertEqual(verdict(frame(tag: 30), ingress: trunk), .dropped(.vlanFiltered))
        XCTAssertEqual(verdict(frame(), ingress: trunk), .dropped(.vlanFiltered), "untagged on a trunk")
        XCTAssertEqual(verdict(frame(tag: 20, tpid: 0x88A8), ingress: trunk), .dropped(.vlanFiltered),
                       "an S-TAG is not a C-TAG: untagged as far as 802.1Q ingress goes")
    }

    func testATrunkWithANativeVLANAdmitsUntaggedFramesIntoIt() {
        let trunk = PortIngress(vlan: .trunk([10, 20], native: 20))
        XCTAssertEqual(verdict(frame(), ingress: trunk), .admitted(vlan: 20))
        XCTAssertEqual(verdict(frame(tag: 20), ingress: trunk), .admitted(vlan: 20), "tagged with the native id too")
        XCTAssertEqual(verdict(frame(tag: 10), ingress: trunk), .admitted(vlan: 10))
        XCTAssertEqual(verdict(frame(), port: 3, ingress: PortIngress(vlan: .trunk([10]))), .dropped(.vlanFiltered))
    }

    func testATaggedFrameShorterThanItsTagIsARunt() {
        let trunk = PortIngress(vlan: .trunk([20]))
        XCTAssertEqual(verdict(frame(tag: 20), length: 17, ingress: trunk), .dropped(.runt))
        XCTAssertEqual(verdict(frame(tag: 20), length: 18, ingress: trunk), .admitted(vlan: 20))
    }

    func testAFrameFromAGroupAddressIsRefusedAfterItsVLAN() {
        XCTAssertEqual(verdict(frame(source: 0x0100_5E00_0001), ingress: PortIngress(vlan: .access(10))),
                       .dropped(.invalidSource))
        XCTAssertEqual(verdict(frame(source: 0xFFFF_FFFF_FFFF, tag: 10), ingress: PortIngress(vlan: .access(10))),
                       .dropped(.vlanFiltered), "the VLAN is checked first")
    }

    func testLinkLocalAddressesAreHeldBackUnlessThePortsMaskLetsThemThrough() throws {
        let plain = PortIngress(vlan: .access(10))
        XCTAssertFalse(plain.holdsBack(linkLocal: 0x0180_C200_0000), "STP BPDUs always pass")
        XCTAssertTrue(plain.holdsBack(linkLocal: 0x0180_C200_0001), "PAUSE never does")
        XCTAssertTrue(plain.holdsBack(linkLocal: 0x0180_C200_000E))
        XCTAssertFalse(plain.holdsBack(linkLocal: 0x0180_C200_0010), "not link-local")
        XCTAssertFalse(plain.holdsBack(linkLocal: 0xFFFF_FFFF_FFFF))
        let lldp = PortIngress(vlan: .access(10), groupForwardMask: try GroupForwardMask(parsing: "0x4000"))
        XCTAssertFalse(lldp.holdsBack(linkLocal: 0x0180_C200_000E))
        XCTAssertTrue(lldp.holdsBack(linkLocal: 0x0180_C200_0003))
    }
}
