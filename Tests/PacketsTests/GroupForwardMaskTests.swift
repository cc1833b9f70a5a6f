import Model
import Packets
import XCTest

/// The Linux bridge's rules for 01:80:C2:00:00:0X with STP off (net/bridge/br_input.c).
final class GroupForwardMaskTests: XCTestCase {
    func testBPDUsAlwaysPausesNeverTheRestAsGiven() throws {
        XCTAssertEqual(GroupForwardMask.none.forwarded, 0x0001, "BPDUs only, by default")
        XCTAssertEqual(try GroupForwardMask(parsing: "0x4008").forwarded, 0x4009, "LLDP and 802.1X added")
        XCTAssertEqual(try GroupForwardMask(parsing: "0xfffd").forwarded, 0xfffd)
        XCTAssertEqual(try GroupForwardMask(parsing: "0x0001").forwarded, 0x0001, "bit 0 may be given; it changes nothing")
    }

    func testSpellings() throws {
        XCTAssertEqual(try GroupForwardMask(parsing: "0x4000").bits, 0x4000)
        XCTAssertEqual(try GroupForwardMask(parsing: "0X000C").bits, 0x000C)
        XCTAssertEqual(try GroupForwardMask(parsing: "16392").bits, 0x4008)
        XCTAssertEqual(try GroupForwardMask(parsing: "0").bits, 0)
        XCTAssertEqual(try GroupForwardMask(parsing: "0x4008").description, "0x4008")
        XCTAssertEqual(try GroupForwardMask(parsing: "4").description, "0x0004")
        for bad in ["", "0x", "-1", "+4", "65536", "0x10000", "0xg", "lldp", "4 "] {
            XCTAssertThrowsError(try GroupForwardMask(parsing: bad), bad)
        }
        XCTAssertThrowsError(try GroupForwardMask(parsing: "0x0002")) { error in
            XCTAssertEqual("\(error)", "group_fwd_mask must leave bit 1 (0x0002) clear: "
                           + "MAC control frames (PAUSE, 01:80:C2:00:00:01) are never forwarded")
        }
    }

    func testOnlyTheSixteenReservedAddressesAreLinkLocal() {
        XCTAssertTrue(Ethernet.isLinkLocal(0x0180_C200_0000))
        XCTAssertTrue(Ethernet.isLinkLocal(0x0180_C200_000E))
        XCTAssertTrue(Ethernet.isLinkLocal(0x0180_C200_000F))
        XCTAssertFalse(Ethernet.isLinkLocal(0x0180_C200_0010), "GARP/MRP: an ordinary group address here")
        XCTAssertFalse(Ethernet.isLinkLocal(0x0180_C200_0020))
        XCTAssertFalse(Ethernet.isLinkLocal(0x0100_5E00_0001))
        XCTAssertFalse(Ethernet.isLinkLocal(0xFFFF_FFFF_FFFF))
    }
}
