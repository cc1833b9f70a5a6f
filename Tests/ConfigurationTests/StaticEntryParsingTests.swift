import Configuration
import Model
import XCTest

/// `ferry run --fdb`: the file's entry keys on one line.
final class StaticEntryParsingTests: XCTestCase {
    func testAnEntryIsTheAddressThenItsKeys() throws {
        let entry = try StaticFDBEntry(parsing: "52:54:00:12:34:56,port=vm0,vlan=10")
        XCTAssertEqual(entry, StaticFDBEntry(mac: MACAddress("52:54:00:12:34:56")!, port: "vm0", vlan: 10))
        XCTAssertEqual(try StaticFDBEntry(parsing: "52-54-00-12-34-56,port=u").vlan, nil)
    }

    func testRefusalsSayWhat() {
        let cases = [
            ("52:54:00:12:34:56", "--fdb 52:54:00:12:34:56: needs port=NAME"),
            ("nonsense,port=a", "--fdb nonsense,port=a: 'nonsense' is not a MAC address"),
            ("52:54:00:12:34:56,port=a,port=b", "--fdb 52:54:00:12:34:56,port=a,port=b: port= given twice"),
            ("52:54:00:12:34:56,port=a,vlan=4095", "--fdb 52:54:00:12:34:56,port=a,vlan=4095: VLAN id '4095' must be 1...4094"),
            ("52:54:00:12:34:56,port=a,age=3", "--fdb 52:54:00:12:34:56,port=a,age=3: unknown key 'age' (port, vlan)"),
            ("52:54:00:12:34:56,a", "--fdb 52:54:00:12:34:56,a: 'a' is not KEY=VALUE (port=, vlan=)"),
            ("52:54:00:12:34:56,port=", "--fdb 52:54:00:12:34:56,port=: port= needs a port's name"),
            ("00:00:00:00:00:00,port=a", "--fdb 00:00:00:00:00:00,port=a: 00:00:00:00:00:00 is the null address"),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try StaticFDBEntry(parsing: text), text) { error in
                XCTAssertEqual((error as? StaticFDBEntry.Refusal)?.description, message)
            }
        }
    }
}
