import Foundation
import Glibc
import Model
import Packets
import Platform
import TestSupport
@testable import XDP
import XCTest

/// The steering program on a veth carrying frames: what it counts, that a
/// guest's frame with no AF_XDP socket on its queue still reaches the kernel,
/// and the guest map the control plane fills. Root only, like every XDP test.
final class SteeringTrafficTests: XCTestCase {
    override func setUpWithError() throws {
        try XDPSandbox.requireSupport()
    }

    private let guest = MACAddress(0x02, 0xfe, 0x00, 0x00, 0x00, 0x01)
    private let stranger = MACAddress(0x02, 0xfe, 0x00, 0x00, 0x00, 0x02)
    private let source = MACAddress(0x02, 0xfe, 0x00, 0x00, 0x00, 0x99)

    /// Frames sent into the veth's far end arrive at the program; each kind is
    /// counted where it belongs, and every one reaches the kernel afterwards.
    func testCountsSteeredPassedAndMalformedFrames() throws {
        let veth = try VethPair("c")
        let program = try SteeringProgram.attach(interface: veth.outer, mode: .native, guestCapacity: 16,
                                                 logger: XDPSandbox.logger)
        defer { program.detach() }
        let group = MACAddress(0x01, 0x00, 0x5e, 0x00, 0x00, 0x01)
        try program.addGuest(guest, vlan: 0)
        try program.addGuest(guest, vlan: 7)
        // A group address in the map changes nothing: group frames belong to the host too.
        try program.addGuest(group, vlan: 0)
        let kernelSide = try PacketSocket(interface: veth.outerIndex)
        let sender = try PacketSocket(interface: veth.innerIndex)
        let before = program.statistics()

        let frames: [[UInt8]] = [
            frame(to: guest),                                  // steered
            frame(to: guest, tci: 0xe007),                     // steered: VID 7, priority bits ignored
            frame(to: guest, tci: 0x0008),                     // passed: VID 8 is not the guest's
            frame(to: stranger),                               // passed
            frame(to: .broadcast),                             // passed
            frame(to: group),                                  // passed
            Array(frame(to: guest, tci: 0x0007).prefix(16)),   // malformed: the tag is cut
        ]
        for frame in frames { try sender.send(frame) }

        let expected = (steered: before.steered + 2, passed: before.passed + 4, malformed: before.malformed + 1)
        XCTAssertTrue(XDPSandbox.eventually {
            let now = program.statistics()
            return now.steered >= expected.steered && now.passed >= expected.passed && now.malformed >= expected.malformed
        }, "counters: \(program.statistics()), wanted \(expected)")
        let after = program.statistics()
        XCTAssertEqual(after.steered, expected.steered)
        XCTAssertEqual(after.passed, expected.passed)
        XCTAssertEqual(after.malformed, expected.malformed)
        // No socket is bound to queue 0, so the redirect's default, XDP_PASS,
        // applied. The kernel strips 802.1Q tags before packet sockets see a
        // frame, and drops the cut one itself.
        for (index, frame) in frames.dropLast().enumerated() {
            let untagged = frame[12] == 0x81 ? Array(frame[..<12] + frame[16...]) : frame
            XCTAssertEqual(try kernelSide.receive(timeout: 2), untagged, "frame \(index) reached the kernel")
        }
    }

    /// The host's own traffic keeps flowing while guests are steered: with the
    /// host's own MAC in the map (so every frame to it is redirected) and no
    /// socket on the queue, a UDP exchange across the veth (ARP first) works.
    func testHostTrafficFlowsWithItsMACInTheMapAndNoSocket() throws {
        let veth = try VethPair("n", peerNamespace: true)
        let namespace = try XCTUnwrap(veth.namespace)
        let subnet = 100 + Int(getpid() % 100)
        let hostAddress = "198.18.\(subnet).1"
        try NetworkSandbox.ip("addr", "add", "\(hostAddress)/30", "dev", veth.outer)
        try namespace.ip("addr", "add", "198.18.\(subnet).2/30", "dev", veth.inner)
        let program = try SteeringProgram.attach(interface: veth.outer, mode: .auto, guestCapacity: 16,
                                                 logger: XDPSandbox.logger)
        defer { program.detach() }
        let hostMAC = try XCTUnwrap(MACAddress(try veth.outerMAC()))
        try program.addGuest(hostMAC, vlan: 0)
        try program.addGuest(guest, vlan: 0)
        let echo = try UDPEcho(address: hostAddress)

        // The peer sends a datagram and waits for it to come back.
        let client = """
            import socket, sys
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(3)
            s.sendto(b"ferry", ("\(hostAddress)", \(echo.port)))
            sys.exit(0 if s.recv(16) == b"ferry" else 1)
            """
        let peer = Process()
        peer.executableURL = URL(fileURLWithPath: NetworkSandbox.ipPath)
        peer.arguments = ["netns", "exec", namespace.name, "/usr/bin/python3", "-c", client]
        try peer.run()
        XCTAssertTrue(try echo.answerOne(timeout: 5), "the datagram reached the host's socket")
        peer.waitUntilExit()
        XCTAssertEqual(peer.terminationStatus, 0, "the answer reached the peer")
        // The ARP request is broadcast (passed); the host learns the peer from it, so no ARP reply comes back.
        XCTAssertGreaterThanOrEqual(program.statistics().steered, 1, "the datagram was steered, then passed")
    }

    func testGuestMapRoundTrip() throws {
        let veth = try VethPair("m")
        let program = try SteeringProgram.attach(interface: veth.outer, mode: .auto, guestCapacity: 8,
                                                 logger: XDPSandbox.logger)
        defer { program.detach() }
        XCTAssertTrue(program.guests().isEmpty)
        try program.addGuest(guest, vlan: 0)
        try program.addGuest(guest, vlan: 4095)
        try program.addGuest(stranger, vlan: 100)
        try program.addGuest(stranger, vlan: 100) // adding twice is one entry
        XCTAssertEqual(entries(program), ["\(guest)/0", "\(guest)/4095", "\(stranger)/100"])

        try program.removeGuest(guest, vlan: 4095)
        try program.removeGuest(guest, vlan: 4095) // gone already: not an error
        try program.removeGuest(source, vlan: 1)   // never there: not an error
        XCTAssertEqual(entries(program), ["\(guest)/0", "\(stranger)/100"])

        XCTAssertThrowsError(try program.addGuest(guest, vlan: 4096)) { error in
            guard case .mapUpdateFailed("ferry_guests", _)? = error as? XDPError else { return XCTFail("\(error)") }
        }
    }

    func testGuestCapacityBoundsTheMap() throws {
        let veth = try VethPair("k")
        let program = try SteeringProgram.attach(interface: veth.outer, mode: .auto, guestCapacity: 2,
                                                 logger: XDPSandbox.logger)
        defer { program.detach() }
        try program.addGuest(guest, vlan: 1)
        try program.addGuest(guest, vlan: 2)
        XCTAssertThrowsError(try program.addGuest(guest, vlan: 3)) { error in
            guard case .mapUpdateFailed("ferry_guests", let reason)? = error as? XDPError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("errno \(E2BIG)"), reason)
        }
        try program.addGuest(guest, vlan: 2) // replacing an entry needs no room
    }

    /// Only AF_XDP sockets go into the socket map; clearing a queue without one is fine.
    func testSocketMapTakesOnlyXDPSockets() throws {
        let veth = try VethPair("x")
        let program = try SteeringProgram.attach(interface: veth.outer, mode: .auto, guestCapacity: 2,
                                                 logger: XDPSandbox.logger)
        defer { program.detach() }
        let notASocket = try EventFD.create()
        XCTAssertThrowsError(try program.setSocket(queue: 0, fd: notASocket.rawValue)) { error in
            guard case .mapUpdateFailed("ferry_xsks", _)? = error as? XDPError else { return XCTFail("\(error)") }
        }
        try program.clearSocket(queue: 0)
        try program.clearSocket(queue: 63)
    }

    private func entries(_ program: SteeringProgram) -> [String] {
        program.guests().map { "\($0.0)/\($0.1)" }.sorted()
    }

    /// A 60-byte frame from `source` to `destination`, 802.1Q-tagged with `tci` if given.
    private func frame(to destination: MACAddress, tci: UInt16? = nil) -> [UInt8] {
        var bytes = destination.array + source.array
        if let tci { bytes += [0x81, 0x00, UInt8(tci >> 8), UInt8(tci & 0xff)] }
        bytes += [0x88, 0xb5] // IEEE 802 local experimental ethertype: no protocol of the host answers it
        bytes += [UInt8](repeating: 0xa5, count: 60 - bytes.count)
        return bytes
    }
}

/// A UDP socket on the host's side that sends one datagram back to its sender.
private final class UDPEcho {
    let fd: Int32
    let port: UInt16

    init(address: String) throws {
        let fd = try syscall("socket(UDP)") { socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        self.fd = fd
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        _ = inet_pton(AF_INET, address, &local.sin_addr)
        _ = try syscall("bind(\(address))") {
            withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = try syscall("getsockname") {
            withUnsafeMutablePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
        }
        port = UInt16(bigEndian: local.sin_port)
    }

    deinit { close(fd) }

    /// Waits for one datagram and sends it back; false if none came in time.
    func answerOne(timeout: Double) throws -> Bool {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard try syscall("poll(UDP)", { poll(&pfd, 1, Int32(timeout * 1000)) }) > 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 64)
        var peer = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let count = try syscall("recvfrom(UDP)") {
            withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buffer, buffer.count, 0, $0, &length) }
            }
        }
        _ = try syscall("sendto(UDP)") {
            withUnsafePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, buffer, count, 0, $0, length) }
            }
        }
        return true
    }
}
