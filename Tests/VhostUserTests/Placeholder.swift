import XCTest
final class VhostUserTestsPlaceholder: XCTestCase { func testBuilds() {} }
