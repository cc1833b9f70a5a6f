import XCTest
final class PacketsTestsPlaceholder: XCTestCase { func testBuilds() {} }
