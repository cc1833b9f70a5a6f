import Foundation
import Glibc
@testable import Platform
import TestSupport
import XCTest

/// Real TAP interfaces: these tests need root and /dev/net/tun, and fail with
/// the reason when either is missing. Every interface and namespace a test
/// creates is removed again, also when the test fails.
final class TapDeviceTests: XCTestCase {
    private let pid = Int(getpid())
    /// A name unique to this run and test, within IFNAMSIZ: "ferrytst" + 3 digits + suffix.
    private func tapName(_ suffix: String) -> String { "ferrytst\(pid % 1000)\(suffix)" }

    override func setUpWithError() throws {
        try NetworkSandbox.requireTapSupport()
    }

    func testCreatedTapIsUpTakesAnMTUAndDisappearsOnClose() throws {
        let name = tapName("a")
        NetworkSandbox.removeInterface(name)
        defer { NetworkSandbox.removeInterface(name) }
        XCTAssertEqual(if_nametoindex(name), 0)

        let tap = try TapDevice(name: name, offloads: [.checksum], mtu: 1400)
        XCTAssertTrue(tap.created)
        XCTAssertEqual(tap.name, name)
        XCTAssertEqual(tap.queueCount, 1)
        XCTAssertNotEqual(tap.index, 0)
        XCTAssertEqual(if_nametoindex(name), tap.index)
        XCTAssertTrue(try tap.isUp())
        XCTAssertEqual(try sysfsFlags(name) & 0x1, 0x1, "IFF_UP in /sys/class/net/\(name)/flags")
        XCTAssertEqual(try tap.mtu(), 1400)

        try tap.setMTU(9000)
        XCTAssertEqual(try tap.mtu(), 9000)
        XCTAssertEqual(try NetworkSandbox.sysfs(name, "mtu"), "9000")

        let fd = tap.queueDescriptors[0]
        XCTAssertNotEqual(fcntl(fd, F_GETFL) & O_NONBLOCK, 0, "O_NONBLOCK")
        XCTAssertNotEqual(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0, "FD_CLOEXEC")
        // IFF_TAP | IFF_NO_PI | IFF_VNET_HDR as the driver reports them.
        XCTAssertEqual(try sysfsHex(name, "tun_flags") & 0x5102, 0x5002)

        tap.close()
        XCTAssertEqual(if_nametoindex(name), 0, "a TAP Ferry created is gone once closed")
        tap.close()
    }

    func testDroppingTheLastReferenceRemovesACreatedTap() throws {
        let name = tapName("b")
        NetworkSandbox.removeInterface(name)
        defer { NetworkSandbox.removeInterface(name) }
        do {
            let tap = try TapDevice(name: name)
            XCTAssertNotEqual(if_nametoindex(tap.name), 0)
        }
        XCTAssertEqual(if_nametoindex(name), 0)
    }

    func testMultiQueueGivesOneDescriptorPerQueue() throws {
        let name = tapName("m")
        NetworkSandbox.removeInterface(name)
        defer { NetworkSandbox.removeInterface(name) }
        let tap = try TapDevice(name: name, queues: 2, offloads: [.checksum, .tso4, .tso6])
        XCTAssertEqual(tap.queueCount, 2)
        let fds = tap.queueDescriptors
        XCTAssertNotEqual(fds[0], fds[1])
        for fd in fds {
            XCTAssertGreaterThanOrEqual(fd, 0)
            XCTAssertNotEqual(fcntl(fd, F_GETFL) & O_NONBLOCK, 0)
            XCTAssertNotEqual(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0)
        }
        XCTAssertEqual(try sysfsHex(name, "tun_flags") & 0x0100, 0x0100, "IFF_MULTI_QUEUE")
        XCTAssertTrue(try tap.isUp())

        // Nothing queued yet: a read is a value, not an error.
        var buffer = [UInt8](repeating: 0, count: 2048)
        let result = try buffer.withUnsafeMutableBytes { raw in
            var iov = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
            return try tap.readv(queue: 1, &iov, count: 1)
        }
        guard case .wouldBlock = result else { return XCTFail("expected wouldBlock, got \(result)") }

        tap.close()
        XCTAssertEqual(if_nametoindex(name), 0)
    }

    func testANameTemplateGetsTheKernelsNameForEveryQueue() throws {
        let tap = try TapDevice(name: "ferrytst%d", queues: 2)
        defer { tap.close() }
        XCTAssertTrue(tap.created)
        XCTAssertTrue(tap.name.hasPrefix("ferrytst"), tap.name)
        XCTAssertFalse(tap.name.contains("%"), tap.name)
        XCTAssertNotEqual(if_nametoindex(tap.name), 0)
        XCTAssertEqual(try sysfsHex(tap.name, "tun_flags") & 0x0100, 0x0100)
        let name = tap.name
        tap.close()
        XCTAssertEqual(if_nametoindex(name), 0)
    }

    func testOffloadsAndTheSendBufferChangeAtRunTime() throws {
        let name = tapName("r")
        NetworkSandbox.removeInterface(name)
        defer { NetworkSandbox.removeInterface(name) }
        let tap = try TapDevice(name: name, queues: 2)
        XCTAssertEqual(tap.offloads, [])
        try tap.setOffloads([.checksum, .tso4, .tso6])
        XCTAssertEqual(tap.offloads, [.checksum, .tso4, .tso6])
        XCTAssertThrowsError(try tap.setOffloads([.tso6])) { error in
            guard let error = error as? SystemError else { return XCTFail("\(error)") }
            XCTAssertEqual(error.errno, EINVAL)
            XCTAssertTrue(error.description.contains("TSO needs checksum"), error.description)
        }
        XCTAssertEqual(tap.offloads, [.checksum, .tso4, .tso6], "a refused change leaves the offloads as they were")
        try tap.setOffloads([])
        XCTAssertEqual(tap.offloads, [])

        try tap.setSendBuffer(bytes: 65_536)
        XCTAssertThrowsError(try tap.setSendBuffer(bytes: 0)) { error in
            XCTAssertEqual(error as? InvalidArgument, InvalidArgument("TUNSETSNDBUF(\(name), 0): must be 1...\(Int32.max)"))
        }

        tap.close()
        XCTAssertThrowsError(try tap.setOffloads([.checksum])) { error in
            XCTAssertTrue("\(error)".contains("closed"), "\(error)")
        }
        XCTAssertThrowsError(try tap.setSendBuffer(bytes: 4096)) { error in
            XCTAssertTrue("\(error)".contains("closed"), "\(error)")
        }
    }

    func testTooLongANameIsRefusedBeforeAnythingIsCreated() {
        let name = "ferrytst-toolong" // 16 bytes; IFNAMSIZ leaves room for 15.
        XCTAssertThrowsError(try TapDevice(name: name)) { error in
            guard let error = error as? InvalidArgument else { return XCTFail("\(error)") }
            XCTAssertTrue(error.description.contains("too long"), error.description)
            XCTAssertTrue(error.description.contains(name), error.description)
        }
        XCTAssertEqual(if_nametoindex(name), 0)
        XCTAssertThrowsError(try TapDevice(name: "")) { error in
            XCTAssertEqual(error as? InvalidArgument, InvalidArgument("TAP name is empty"))
        }
    }

    func testAMissingCloneDeviceSaysSo() {
        let name = tapName("c")
        XCTAssertThrowsError(try TapDevice(name: name, queues: 1, offloads: [], mtu: nil,
                                           clonePath: "/nonexistent/ferry/tun")) { error in
            guard let error = error as? SystemError else { return XCTFail("\(error)") }
            XCTAssertEqual(error.errno, ENOENT)
            XCTAssertTrue(error.description.contains("no TUN/TAP support"), error.description)
            XCTAssertTrue(error.call.hasPrefix("open(/nonexistent/ferry/tun)"), error.description)
        }
        XCTAssertEqual(if_nametoindex(name), 0)
    }

    func testRefusedOffloadsFailTheOpenAndRemoveTheTap() {
        let name = tapName("o")
        NetworkSandbox.removeInterface(name)
        defer { NetworkSandbox.removeInterface(name) }
        // TSO without checksum offload is refused by the driver, after TUNSETIFF created the TAP.
        XCTAssertThrowsError(try TapDevice(name: name, queues: 2, offloads: [.tso4])) { error in
            guard let error = error as? SystemError else { return XCTFail("\(error)") }
            XCTAssertEqual(error.errno, EINVAL)
            XCTAssertTrue(error.call.hasPrefix("TUNSETOFFLOAD(\(name)"), error.description)
        }
        XCTAssertEqual(if_nametoindex(name), 0, "a failed open leaves no interface behind")
    }

    func testAMTUTheDriverRefusesFailsTheOpenAndRemovesTheTap() {
        let name = tapName("u")
        NetworkSandbox.removeInterface(name)
        defer { NetworkSandbox.removeInterface(name) }
        XCTAssertThrowsError(try TapDevice(name: name, mtu: 70_000)) { error in
            guard let error = error as? SystemError else { return XCTFail("\(error)") }
            XCTAssertEqual(error.errno, EINVAL)
            XCTAssertTrue(error.call.hasPrefix("SIOCSIFMTU(\(name), 70000)"), error.description)
        }
        XCTAssertEqual(if_nametoindex(name), 0)
    }

    func testAnInterfaceThatIsNotATapIsRefusedByName() {
        XCTAssertThrowsError(try TapDevice(name: "lo")) { error in
            guard let error = error as? SystemError else { return XCTFail("\(error)") }
            XCTAssertEqual(error.errno, EINVAL)
            XCTAssertTrue(error.call.hasPrefix("TUNSETIFF(lo)"), error.description)
            XCTAssertTrue(error.description.contains("not a TAP"), error.description)
        }
        XCTAssertNotEqual(if_nametoindex("lo"), 0)
    }

    func testAPreexistingPersistentTapIsAttachedAndLeftInPlace() throws {
        let name = tapName("p")
        NetworkSandbox.removeInterface(name)
        defer { NetworkSandbox.removeInterface(name) }
        try NetworkSandbox.ip("tuntap", "add", "mode", "tap", "name", name)
        let index = if_nametoindex(name)
        XCTAssertNotEqual(index, 0)

        let tap = try TapDevice(name: name, mtu: 2000)
        XCTAssertFalse(tap.created)
        XCTAssertEqual(tap.index, index)
        XCTAssertTrue(try tap.isUp())
        XCTAssertEqual(try tap.mtu(), 2000)
        // Attaching set the virtio-net header flag on the persistent device.
        XCTAssertEqual(try sysfsHex(name, "tun_flags") & 0x4000, 0x4000)
        tap.close()

        XCTAssertEqual(if_nametoindex(name), index, "a persistent TAP that pre-existed stays")
        // A second attach works too: Ferry left no descriptor behind.
        let again = try TapDevice(name: name)
        XCTAssertFalse(again.created)
        again.close()
        XCTAssertEqual(if_nametoindex(name), index)
    }

    /// The kernel answers an ICMP echo request Ferry writes into the TAP, and
    /// Ferry reads the reply back, each frame behind a 12-byte virtio-net
    /// header. The TAP is moved into a namespace of the test's own so that the
    /// address, neighbour and traffic stay out of the host's.
    func testKernelAnswersAnEchoRequestWrittenToTheTap() throws {
        let name = tapName("t")
        let namespace = "ferry-tt-\(pid)"
        NetworkSandbox.removeInterface(name)
        _ = try? NetworkSandbox.ip("netns", "del", namespace)
        try NetworkSandbox.ip("netns", "add", namespace)
        defer { _ = try? NetworkSandbox.ip("netns", "del", namespace) }

        let tap = try TapDevice(name: name, offloads: [.checksum, .tso4, .tso6])
        defer { tap.close() }
        let tapMAC = try parseMAC(try NetworkSandbox.sysfs(name, "address"))
        let peerMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0x99]
        let tapIP: [UInt8] = [198, 18, 99, 1]
        let peerIP: [UInt8] = [198, 18, 99, 2]

        // Moving a device takes it down; the descriptors stay attached.
        try NetworkSandbox.ip("link", "set", name, "netns", namespace)
        try NetworkSandbox.ip("-n", namespace, "addr", "add", "198.18.99.1/30", "dev", name)
        try NetworkSandbox.ip("-n", namespace, "link", "set", name, "up")
        try NetworkSandbox.ip("-n", namespace, "neigh", "add", "198.18.99.2", "lladdr", "02:00:00:00:00:99", "dev", name)

        let identifier: UInt16 = UInt16(truncatingIfNeeded: pid)
        let payload = (0..<32).map { UInt8($0) }
        let request = echoRequest(from: peerMAC, peerIP, to: tapMAC, tapIP, identifier: identifier, payload: payload)
        var header = [UInt8](repeating: 0, count: TapDevice.headerSize)
        let written = try header.withUnsafeMutableBytes { h in
            try request.withUnsafeBytes { f in
                var iovs = [iovec(iov_base: h.baseAddress, iov_len: h.count),
                            iovec(iov_base: UnsafeMutableRawPointer(mutating: f.baseAddress), iov_len: f.count)]
                return try tap.writev(queue: 0, &iovs, count: 2)
            }
        }
        guard case .done(let count) = written else { return XCTFail("writev would block") }
        XCTAssertEqual(count, TapDevice.headerSize + request.count)

        // The link also carries the kernel's own frames (IPv6 router
        // solicitations, MLD): read until the echo reply, for up to 2 s.
        let deadline = Date().addingTimeInterval(2)
        var replyHeader = [UInt8](repeating: 0xAA, count: TapDevice.headerSize)
        var frame = [UInt8](repeating: 0, count: 2048)
        while true {
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { return XCTFail("no ICMP echo reply from the kernel within 2 s") }
            var pfd = pollfd(fd: tap.queueDescriptors[0], events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32(remaining * 1000) + 1)
            XCTAssertGreaterThanOrEqual(ready, 0, "poll: \(String(cString: strerror(errno)))")
            if ready <= 0 { continue }

            replyHeader = [UInt8](repeating: 0xAA, count: TapDevice.headerSize)
            let read = try replyHeader.withUnsafeMutableBytes { h in
                try frame.withUnsafeMutableBytes { f in
                    var iovs = [iovec(iov_base: h.baseAddress, iov_len: h.count),
                                iovec(iov_base: f.baseAddress, iov_len: f.count)]
                    return try tap.readv(queue: 0, &iovs, count: 2)
                }
            }
            guard case .done(let total) = read else { continue }
            XCTAssertGreaterThan(total, TapDevice.headerSize)
            let length = total - TapDevice.headerSize
            guard length >= 42, frame[12] == 0x08, frame[13] == 0x00, frame[14 + 9] == 1, frame[34] == 0 else { continue }

            // virtio-net header, written over the 0xAA fill: no GSO, at most
            // DATA_VALID. num_buffers is not checked: older kernels skip it, newer zero it.
            XCTAssertEqual(replyHeader[0] & ~0x02, 0, "flags \(replyHeader[0])")
            XCTAssertEqual(replyHeader[1], 0, "gso_type")
            XCTAssertFalse(replyHeader[2..<10].contains(0xAA), "header fields \(replyHeader)")
            // Ethernet: to the fake peer's neighbour entry, from the TAP.
            XCTAssertEqual(Array(frame[0..<6]), peerMAC)
            XCTAssertEqual(Array(frame[6..<12]), tapMAC)
            // IPv4: from the TAP's address to the peer's.
            XCTAssertEqual(Array(frame[26..<30]), tapIP)
            XCTAssertEqual(Array(frame[30..<34]), peerIP)
            XCTAssertEqual(checksum(frame[14..<34]), 0, "IPv4 header checksum")
            // ICMP echo reply with our identifier, sequence and payload.
            let icmp = Array(frame[34..<(14 + Int(frame[16]) << 8 + Int(frame[17]))])
            XCTAssertEqual(icmp[0], 0, "echo reply")
            XCTAssertEqual(Array(icmp[4..<6]), [UInt8(identifier >> 8), UInt8(identifier & 0xff)])
            XCTAssertEqual(Array(icmp[6..<8]), [0, 1])
            XCTAssertEqual(Array(icmp[8...]), payload)
            if replyHeader[0] & 0x01 == 0 { XCTAssertEqual(checksum(icmp[...]), 0, "ICMP checksum") }
            return
        }
    }

    // MARK: Helpers

    private func sysfsHex(_ name: String, _ attribute: String) throws -> Int {
        let text = try NetworkSandbox.sysfs(name, attribute)
        guard let value = Int(text.hasPrefix("0x") ? String(text.dropFirst(2)) : text, radix: 16) else {
            throw NetworkSandbox.Unavailable("\(attribute) of \(name) is not hex: \(text)")
        }
        return value
    }

    private func sysfsFlags(_ name: String) throws -> Int { try sysfsHex(name, "flags") }

    private func parseMAC(_ text: String) throws -> [UInt8] {
        let bytes = text.split(separator: ":").compactMap { UInt8($0, radix: 16) }
        guard bytes.count == 6 else { throw NetworkSandbox.Unavailable("not a MAC address: \(text)") }
        return bytes
    }

    /// The Internet checksum (RFC 1071) of `bytes`; 0 over a block that carries a correct one.
    private func checksum(_ bytes: ArraySlice<UInt8>) -> UInt16 { ~onesComplementSum(bytes) }

    /// Ethernet + IPv4 + ICMP echo request (RFC 792), sequence 1.
    private func echoRequest(from srcMAC: [UInt8], _ srcIP: [UInt8], to dstMAC: [UInt8], _ dstIP: [UInt8],
                             identifier: UInt16, payload: [UInt8]) -> [UInt8] {
        var icmp: [UInt8] = [8, 0, 0, 0, UInt8(identifier >> 8), UInt8(identifier & 0xff), 0, 1] + payload
        let icmpSum = checksum(icmp[...])
        icmp[2] = UInt8(icmpSum >> 8)
        icmp[3] = UInt8(icmpSum & 0xff)
        let totalLength = 20 + icmp.count
        var ipHeader: [UInt8] = [0x45, 0, UInt8(totalLength >> 8), UInt8(totalLength & 0xff),
                                 0, 1, 0x40, 0, 64, 1, 0, 0] + srcIP + dstIP
        let ipSum = checksum(ipHeader[...])
        ipHeader[10] = UInt8(ipSum >> 8)
        ipHeader[11] = UInt8(ipSum & 0xff)
        return dstMAC + srcMAC + [0x08, 0x00] + ipHeader + icmp
    }
}
