import XCTest
final class VirtioTestsPlaceholder: XCTestCase { func testBuilds() {} }
