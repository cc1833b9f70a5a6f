import Model
import XCTest

/// The rule `ferry ctl fdb add` and the config file's `fdb:` share.
final class StaticEntryRefusalTests: XCTestCase {
    func testOnlyAUnicastStationAddressMayBeStatic() throws {
        let cases: [(String, StaticEntryRefusal?)] = [
            ("02:00:00:00:00:01", nil),
            ("00:00:00:00:00:01", nil),
            ("01:00:5e:00:00:01", .groupAddress),
            ("ff:ff:ff:ff:ff:ff", .groupAddress),
            ("01:80:c2:00:00:0e", .groupAddress),
            ("00:00:00:00:00:00", .nullAddress),
        ]
        for (text, refusal) in cases {
            let mac = try XCTUnwrap(MACAddress(text))
            XCTAssertEqual(mac.staticEntryRefusal, refusal, text)
        }
    }
}
