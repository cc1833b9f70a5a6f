import Glibc
import Logging
import Packets
import Platform
import Ports
import TestSupport
import XCTest
import XDP

/// The TAP sender program on a real single-queue TAP: it sees the CPU each frame
/// was sent from, keeps the whole frame, and a sleep that a TAP's frame ends says
/// so (`WakeSources.wokenByTap`), which is what a worker follows. Needs root
/// (TUNSETIFF, CAP_BPF) and fails with the reason without it.
final class TapSenderCPUTests: XCTestCase {
    override func setUpWithError() throws {
        try NetworkSandbox.requireTapSupport()
    }

    func testTheProgramRecordsTheSendersCPUAndKeepsTheWholeFrame() throws {
        let allowed = try XCTUnwrap(ThreadAffinity.allowed(), "sched_getaffinity failed")
        let cpus = (0..<1024).filter { allowed.contains($0) }.prefix(2)
        let program = try SenderCPUProgram.load(logger: Logger(label: "test"))
        let port = try makePort("c")
        try port.device.setFilterProgram(program.programDescriptor)
        let socket = try PacketSocket(interface: port.device.index)
        let batch = PacketBatch(capacity: 8)
        defer { _ = ThreadAffinity.allow(allowed) }
        for (i, cpu) in (Array(cpus) + Array(cpus.reversed())).enumerated() {
            // The packet socket's send runs tun_net_xmit, and so the program, on this thread's CPU.
            XCTAssertNil(ThreadAffinity.pin(to: cpu))
            let frame = udpFrame(sourcePort: 3000 + UInt16(i), size: 300)
            try socket.send(frame)
            XCTAssertEqual(program.lastSenderCPU, cpu, "frame \(i) sent from CPU \(cpu)")
            XCTAssertNil(ThreadAffinity.allow(allowed))
            batch.reset()
            let pulled = try pullOne(port, into: batch)
            XCTAssertEqual(pulled, 1)
            XCTAssertEqual(batch.count, 1)
            XCTAssertEqual(bytes(of: batch, frame: 0), frame, "the program cut frame \(i)")
            port.release(queue: 0)
        }
    }

    func testASleepATapsFrameEndsSaysSoAndATimeoutDoesNot() throws {
        let port = try makePort("w")
        let socket = try PacketSocket(interface: port.device.index)
        let wake = try EventFD.create()
        var sources = WakeSources(capacity: 4)

        XCTAssertTrue(Port.tap(port).addWakeSources(queue: 0, to: &sources))
        XCTAssertTrue(sources.arm(wakeDescriptor: wake.rawValue))
        XCTAssertFalse(sources.wait(timeoutMilliseconds: 20), "nothing sent, yet the sleep did not time out")
        XCTAssertFalse(sources.wokenByTap)
        sources.disarm()

        try socket.send(udpFrame(sourcePort: 3100, size: 100))
        sources.removeAll()
        XCTAssertTrue(Port.tap(port).addWakeSources(queue: 0, to: &sources))
        XCTAssertTrue(sources.arm(wakeDescriptor: wake.rawValue))
        XCTAssertTrue(sources.wait(timeoutMilliseconds: 2000), "the TAP's frame did not end the sleep")
        XCTAssertTrue(sources.wokenByTap)
        sources.disarm()

        // The worker's own wake eventfd (a pause, a stop) is not a TAP.
        let batch = PacketBatch(capacity: 8)
        XCTAssertEqual(try pullOne(port, into: batch), 1)
        port.release(queue: 0)
        EventFD.signal(wake.rawValue)
        sources.removeAll()
        XCTAssertTrue(Port.tap(port).addWakeSources(queue: 0, to: &sources))
        XCTAssertTrue(sources.arm(wakeDescriptor: wake.rawValue))
        XCTAssertTrue(sources.wait(timeoutMilliseconds: 2000))
        XCTAssertFalse(sources.wokenByTap, "woken by the eventfd, not by the TAP")
        sources.disarm()
    }

    /// A TAP of the test's own, IPv6 off so the kernel sends nothing on it by itself.
    private func makePort(_ suffix: String) throws -> TapPort {
        let name = NetworkSandbox.interfaceName("ferrysc", suffix)
        NetworkSandbox.removeInterface(name)
        addTeardownBlock { NetworkSandbox.removeInterface(name) }
        let port = try TapPort(name: name, queues: 1, mtu: nil, batchCapacity: 8)
        addTeardownBlock { port.device.close() }
        try NetworkSandbox.disableIPv6(name)
        try NetworkSandbox.drain(port.device)
        return port
    }

    /// Pulls until one frame came or 2 s passed.
    private func pullOne(_ port: TapPort, into batch: PacketBatch) throws -> Int {
        let deadline = MonotonicClock.nanoseconds() &+ 2_000_000_000
        while MonotonicClock.nanoseconds() < deadline {
            let pulled = port.pull(queue: 0, into: batch)
            if pulled > 0 { return pulled }
            usleep(1000)
        }
        return 0
    }
}
