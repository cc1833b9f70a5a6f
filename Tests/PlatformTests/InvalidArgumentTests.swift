import Glibc
import Platform
import XCTest

/// Values the kernel would refuse are refused first, as `InvalidArgument`
/// (no call was made, so no errno), with a text that says what is allowed.
final class InvalidArgumentTests: XCTestCase {
    func testASocketPathTooLongIsRefusedBeforeASocketIsMade() {
        let path = "/tmp/" + String(repeating: "p", count: 120)
        XCTAssertThrowsError(try closing(UnixSocket.listen(path: path))) { error in
            XCTAssertEqual(error as? InvalidArgument,
                           InvalidArgument("socket path too long: \(path) has 125 bytes, at most 107 (sun_path)"))
        }
        XCTAssertThrowsError(try closing(UnixSocket.connect(path: path))) { error in
            XCTAssertTrue(error is InvalidArgument, "\(error)")
        }
        XCTAssertNotEqual(access(path, F_OK), 0, "nothing was bound")
    }

    func testAStringThatCannotBeAnInterfaceNameIsRefusedAsSuch() {
        for name in ["", "sixteen-bytes-xx", "nul\0name"] {
            XCTAssertThrowsError(try NetworkInterface.index(of: name)) { error in
                XCTAssertEqual(error as? InvalidArgument, InvalidArgument("'\(name)' is not an interface name (1-15 bytes)"))
            }
        }
    }

    func testAMissingInterfaceIsAFailedCallNotAnArgument() {
        XCTAssertThrowsError(try NetworkInterface.index(of: "ferrynone0")) { error in
            XCTAssertEqual((error as? SystemError)?.errno, ENODEV, "\(error)")
        }
    }

    /// XCTAssertThrowsError takes copyable values only: a descriptor made by mistake is closed here.
    private func closing(_ fd: consuming FileDescriptor) {}
}
