import XCTest
final class PortsTestsPlaceholder: XCTestCase { func testBuilds() {} }
