import Glibc
import Platform
import XCTest

/// sd_notify's datagrams, received by a socket standing in for systemd.
final class ServiceManagerSocketTests: XCTestCase {
    /// A bound datagram socket at `name` (a path, or "@..." for the abstract namespace).
    private func manager(_ name: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(name.utf8)
        if name.hasPrefix("@") { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        XCTAssertEqual(bound, 0, "bind \(name): errno \(errno)")
        return fd
    }

    private func receive(_ fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 512)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        return n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : "(nothing: errno \(errno))"
    }

    func testAPathSocketGetsTheAssignmentsInOneDatagram() throws {
        let path = NSTemporaryDirectory() + "ferry-notify-\(getpid()).sock"
        unlink(path)
        let fd = try manager(path)
        defer { close(fd); unlink(path) }
        let notify = try XCTUnwrap(ServiceManagerSocket(environment: path))
        try notify.send(["READY=1", "STATUS=switching: 2 ports"])
        XCTAssertEqual(receive(fd), "READY=1\nSTATUS=switching: 2 ports")
        try notify.send(["WATCHDOG=1"])
        XCTAssertEqual(receive(fd), "WATCHDOG=1")
    }

    func testAnAbstractSocket() throws {
        let name = "@ferry-notify-test-\(getpid())"
        let fd = try manager(name)
        defer { close(fd) }
        try XCTUnwrap(ServiceManagerSocket(environment: name)).send(["STOPPING=1"])
        XCTAssertEqual(receive(fd), "STOPPING=1")
    }

    func testNoSocketOutsideSystemd() {
        XCTAssertNil(ServiceManagerSocket(environment: nil))
        XCTAssertNil(ServiceManagerSocket(environment: ""))
        XCTAssertNil(ServiceManagerSocket(environment: "vsock:2:1234"))
        XCTAssertNil(ServiceManagerSocket(environment: "/" + String(repeating: "x", count: 200)))
    }

    func testAManagerThatIsGoneIsAnError() throws {
        let notify = try XCTUnwrap(ServiceManagerSocket(environment: "/nonexistent/ferry-notify.sock"))
        XCTAssertThrowsError(try notify.send(["READY=1"]))
    }
}
