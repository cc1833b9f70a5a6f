import Foundation
import Glibc
@testable import Platform
import Model
import XCTest

/// Socket owner, group and mode on real sockets. Giving a socket to another user
/// needs root (CAP_CHOWN); those tests fail with the reason without it.
final class SocketPermissionsTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-perm-\(getpid())-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func status(_ path: String) throws -> stat {
        var info = stat()
        guard stat(path, &info) == 0 else { throw SystemError("stat(\(path))", errno: errno) }
        return info
    }

    func testModesParseAsOctalPermissionBits() {
        XCTAssertEqual(SocketPermissions.mode(parsing: "0660"), 0o660)
        XCTAssertEqual(SocketPermissions.mode(parsing: "660"), 0o660)
        XCTAssertEqual(SocketPermissions.mode(parsing: "0o600"), 0o600)
        XCTAssertEqual(SocketPermissions.mode(parsing: "0"), 0)
        for bad in ["", "0669", "1777", "4755", "rw-rw----", "-1", "00660", "0x1b6"] {
            XCTAssertNil(SocketPermissions.mode(parsing: bad), bad)
        }
        XCTAssertEqual(SocketPermissions.octal(0o660), "0660")
        XCTAssertEqual(SocketPermissions(owner: "qemu", group: "kvm", mode: 0o600).description, "owner=qemu,group=kvm,mode=0600")
    }

    func testNamesResolveThroughTheUserAndGroupDatabases() throws {
        XCTAssertNil(try SocketPermissions().resolved(), "nothing asked: the socket is left as bind makes it")
        let root = try XCTUnwrap(SocketPermissions(owner: "root", group: "root").resolved())
        XCTAssertEqual(root, .init(owner: 0, group: 0, mode: SocketPermissions.defaultMode))
        let numeric = try XCTUnwrap(SocketPermissions(owner: "4242", group: "4343", mode: 0o600).resolved())
        XCTAssertEqual(numeric, .init(owner: 4242, group: 4343, mode: 0o600))
        XCTAssertEqual(try SocketPermissions(mode: 0o666).resolved(), .init(owner: nil, group: nil, mode: 0o666))

        XCTAssertThrowsError(try SocketPermissions(owner: "no-such-user-ferry").resolved()) { error in
            XCTAssertEqual("\(error)", "unknown user 'no-such-user-ferry' (not in the user database)")
        }
        XCTAssertThrowsError(try SocketPermissions(group: "no-such-group-ferry").resolved()) { error in
            XCTAssertEqual("\(error)", "unknown group 'no-such-group-ferry' (not in the group database)")
        }
    }

    func testListeningSocketGetsOwnerGroupAndMode() throws {
        guard geteuid() == 0 else { throw XCTSkip("giving a socket to another user needs root (CAP_CHOWN)") }
        let nobody = try XCTUnwrap(getpwnam("nobody")?.pointee, "no user nobody on this machine")
        let path = directory + "/vm0.sock"
        let permissions = SocketPermissions.Resolved(owner: nobody.pw_uid, group: nobody.pw_gid, mode: 0o660)
        let listener = try UnixSocket.listen(path: path, permissions: permissions)
        let info = try status(path)
        XCTAssertEqual(info.st_mode & S_IFMT, S_IFSOCK)
        XCTAssertEqual(info.st_mode & 0o7777, 0o660)
        XCTAssertEqual(info.st_uid, nobody.pw_uid)
        XCTAssertEqual(info.st_gid, nobody.pw_gid)
        // Still a working listener (root may connect whatever the mode).
        let client = try UnixSocket.connect(path: path)
        let accepted = try UnixSocket.accept(listener.rawValue)
        XCTAssertTrue(accepted != nil, "the connection was not accepted")
        _ = client
    }

    func testGroupAloneKeepsTheOwnerAndOpensToTheGroup() throws {
        let path = directory + "/ctl.sock"
        let permissions = SocketPermissions.Resolved(owner: nil, group: getegid(), mode: SocketPermissions.defaultMode)
        _ = try UnixSocket.listen(path: path, permissions: permissions)
        let info = try status(path)
        XCTAssertEqual(info.st_mode & 0o7777, 0o660)
        XCTAssertEqual(info.st_uid, geteuid())
        XCTAssertEqual(info.st_gid, getegid())
    }

    /// The mode does not depend on the process's umask: a umask of 0 would otherwise
    /// leave the socket 0777 for a moment, and 077 would make 0660 impossible.
    func testModeIsExactWhateverTheUmask() throws {
        let saved = umask(0o077)
        defer { umask(saved) }
        let path = directory + "/a.sock"
        _ = try UnixSocket.listen(path: path, permissions: .init(owner: nil, group: nil, mode: 0o666))
        XCTAssertEqual(try status(path).st_mode & 0o7777, 0o666)
    }
}
