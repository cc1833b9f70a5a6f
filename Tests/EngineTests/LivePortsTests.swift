import Glibc
import Model
import Packets
import Platform
import Ports
import Switching
import TestSupport
import VhostUser
import Virtio
import XCTest

@testable import Engine

/// Ports added and removed while a worker thread forwards: the other ports
/// lose no frame, a removed port leaves nothing behind in the forwarding
/// database, and its number is reused only after that.
final class LivePortsTests: XCTestCase {
    let log = CapturedLog()
    let generatorMAC = "02:00:00:00:00:01"
    let guestMAC = "02:00:00:00:00:02"

    private func spec(_ text: String) throws -> PortSpec { try PortSpec(parsing: text) }

    private func makeSwitch(_ specs: [String], workers: Int = 1) throws -> Switch {
        var options = SwitchOptions()
        options.workers = workers
        options.batchSize = 64
        options.fdbCapacity = 1024
        return try Switch(specs: specs.map(spec), options: options, logger: log.logger)
    }

    private func socketPath(_ name: String) -> String { "/tmp/ferry-live-\(getpid())-\(name).sock" }

    /// A generator (count=N) sends to a guest on VLAN 10; the guest posts its
    /// receive buffers a round at a time, and the generator emits only what
    /// the guest has room for, so every round's change happens while frames
    /// of that round are still on their way. Meanwhile ports of every kind
    /// the test can make come and go on other VLANs, and on VLAN 10 itself a
    /// sink joins and leaves. At the end the guest got exactly N frames and
    /// nothing was dropped. A second generator runs free into a sink on VLAN
    /// 30 all along: the sink counts exactly what it sent.
    func testPortsComeAndGoWhileAGeneratorFeedsAGuestAndNoFrameIsLost() throws {
        let rounds = 24
        let perRound = 128
        let total = rounds * perRound
        let freeRunning = 300_000
        let guestSocket = socketPath("guest")
        defer { unlink(guestSocket) }
        let sw = try makeSwitch([
            "gen:dst=\(guestMAC),src=\(generatorMAC),size=64,count=\(total),name=g,vlan=10",
            "vhost:\(guestSocket),name=guest,vlan=10",
            "gen:dst=02:00:00:00:00:31,src=02:00:00:00:00:30,size=60,count=\(freeRunning),name=g30,vlan=30",
            "sink:name=s30,vlan=30",
        ], workers: 2)
        guard case .vhost(let guestPort) = sw.port(named: "guest")!.port,
              case .gen(let generator) = sw.port(named: "g")!.port,
              case .gen(let freeGenerator) = sw.port(named: "g30")!.port,
              case .sink(let sink) = sw.port(named: "s30")!.port else { return XCTFail("ports of the wrong kind") }
        let guest = try MockFrontEnd(device: guestPort.device)
        guest.setUp()
        sw.start()
        defer { sw.stop() }

        let churnSocket = socketPath("churn")
        defer { unlink(churnSocket) }
        let changes: [(Switch) throws -> Void] = [
            { try $0.addPort(self.spec("sink:name=s20,vlan=20")) },
            { try $0.addPort(self.spec("gen:dst=ff:ff:ff:ff:ff:ff,src=02:00:00:00:00:20,size=60,name=g20,vlan=20")) },
            { try $0.addPort(self.spec("vhost:\(churnSocket),name=v20,trunk=20,40")) },
            // A flood of the generator's now reaches this sink too: more copies, none fewer.
            { try $0.addPort(self.spec("sink:name=s10,vlan=10")) },
            { try $0.removePort(named: "g20") },
            { try $0.removePort(named: "s10") },
            { try $0.removePort(named: "v20") },
            { try $0.removePort(named: "s20") },
        ]
        var received = 0
        var changesWhileFlowing = 0
        for round in 0..<rounds {
            for _ in 0..<perRound { guest.rx.offerRX(bufferSizes: [2048]) }
            if !generator.isFinished { changesWhileFlowing += 1 }
            try changes[round % changes.count](sw)
            let target = (round + 1) * perRound
            XCTAssertTrue(waitUntil { received += guest.rx.receive().count; return received >= target },
                          "round \(round): \(received) of \(target) frames arrived")
            if received < target { break }
        }

        XCTAssertEqual(received, total)
        XCTAssertTrue(generator.isFinished)
        XCTAssertGreaterThan(changesWhileFlowing, 0)
        XCTAssertEqual(generator.counters.snapshot.rxPackets, UInt64(total))
        XCTAssertEqual(generator.counters.snapshot.totalDrops, 0)
        XCTAssertEqual(guestPort.counters[0].snapshot.txPackets, UInt64(total))
        XCTAssertEqual(guestPort.counters[0].snapshot.drops, [:])
        XCTAssertTrue(waitUntil { freeGenerator.isFinished })
        // The worker counts a burst at the sink right after the generator's pull: wait for the last one.
        XCTAssertTrue(waitUntil { sink.counters.snapshot.txPackets >= UInt64(freeRunning) })
        XCTAssertEqual(freeGenerator.counters.snapshot.rxPackets, UInt64(freeRunning))
        XCTAssertEqual(sink.counters.snapshot.txPackets, UInt64(freeRunning))
        XCTAssertEqual(sink.counters.snapshot.drops, [:])
        XCTAssertEqual(sw.ports.map(\.name), ["g", "guest", "g30", "s30"])
        XCTAssertEqual(sw.ports.map(\.index), [0, 1, 2, 3])
    }

    /// A removed port's entries, learned and static, go with it; its number is
    /// the next one given out, and the port added under it inherits nothing.
    func testARemovedPortsEntriesAreFlushedAndItsNumberReused() throws {
        let sw = try makeSwitch(["sink:name=a", "sink:name=b"])
        let c = try sw.addPort(spec("sink:name=c,trunk=10,20"))
        XCTAssertEqual(c.index, 2)
        let learned = FDBKey(vlan: 10, mac: MACAddress("52:54:00:00:00:0c")!)
        let pinned = FDBKey(vlan: 20, mac: MACAddress("52:54:00:00:00:0d")!)
        let elsewhere = FDBKey(vlan: 1, mac: MACAddress("52:54:00:00:00:0a")!)
        _ = sw.database.learn(learned, port: 2, now: 1)
        XCTAssertTrue(sw.database.addStatic(pinned, port: 2))
        _ = sw.database.learn(elsewhere, port: 0, now: 1)
        XCTAssertEqual(sw.forwarder.members(vlan: 10), PortSet([2]))

        try sw.removePort(named: "c")
        XCTAssertNil(sw.database.lookup(learned))
        XCTAssertNil(sw.database.lookup(pinned), "static entries go with their port")
        XCTAssertEqual(sw.database.lookup(elsewhere), 0, "other ports' entries stay")
        XCTAssertEqual(sw.forwarder.members(vlan: 10), .empty)
        XCTAssertEqual(sw.forwarder.members(vlan: 1), PortSet([0, 1]))
        XCTAssertNil(sw.port(named: "c"))

        let again = try sw.addPort(spec("sink:name=c,vlan=1"))
        XCTAssertEqual(again.index, 2, "the lowest free number")
        XCTAssertEqual(sw.forwarder.members(vlan: 1), PortSet([0, 1, 2]))
        XCTAssertEqual(sw.forwarder.members(vlan: 20), .empty)

        try sw.removePort(named: "a")
        XCTAssertEqual(try sw.addPort(spec("sink")).index, 0)
        XCTAssertEqual(sw.port(index: 0)?.name, "p0", "an unnamed port is named after its number")
        XCTAssertEqual(try sw.addPort(spec("sink:name=d")).index, 3)
        XCTAssertEqual(sw.ports.map(\.index), [0, 1, 2, 3])
    }

    /// A worker that learned an address on a port just before it was removed
    /// queued it for the control thread: removal learns the queue first and
    /// flushes after, so the entry never outlives the port.
    func testAnAddressQueuedJustBeforeRemovalDoesNotOutliveThePort() throws {
        let sw = try makeSwitch(["sink:name=a", "sink:name=b"])
        let late = try sw.addPort(spec("sink:name=late"))
        let key = FDBKey(vlan: 1, mac: MACAddress("52:54:00:00:00:99")!)
        XCTAssertTrue(sw.workers[0].learning.offer(key, port: late.index))
        try sw.removePort(named: "late")
        XCTAssertNil(sw.database.lookup(key))
        XCTAssertEqual(sw.database.counters.entries, 0)
    }

    func testChangesThatCannotBeMadeAreRefusedAndChangeNothing() throws {
        let sw = try makeSwitch(["sink:name=a", "sink:name=b"])
        let guestSocket = socketPath("refused")
        defer { unlink(guestSocket) }
        try sw.addPort(spec("vhost:\(guestSocket),name=v"))
        let before = sw.ports.map(\.name)

        XCTAssertThrowsError(try sw.addPort(spec("sink:name=a"))) {
            XCTAssertEqual($0 as? SwitchError, .nameInUse("a"))
        }
        XCTAssertThrowsError(try sw.removePort(named: "nope")) {
            XCTAssertEqual($0 as? SwitchError, .unknownPort("nope"))
        }
        XCTAssertThrowsError(try sw.addPort(spec("vhost:\(guestSocket),name=w"))) {
            XCTAssertEqual("\($0)", "port 'vhost:\(guestSocket),name=w': socket \(guestSocket) is already port 'v'")
        }
        XCTAssertThrowsError(try sw.addPort(spec("vhost:/nonexistent-dir/x.sock,name=w"))) {
            guard case .port(let text, _) = $0 as? SwitchError else { return XCTFail("\($0)") }
            XCTAssertEqual(text, "vhost:/nonexistent-dir/x.sock,name=w")
        }
        // At startup an uplink that cannot open is kept as a failed port; added later, it is refused.
        XCTAssertThrowsError(try sw.addPort(spec("packet:ferry-no-such0,name=up"))) {
            guard case .port = $0 as? SwitchError else { return XCTFail("\($0)") }
        }
        XCTAssertEqual(sw.ports.map(\.name), before)
        XCTAssertEqual(access(guestSocket, F_OK), 0, "the refused twin left the first port's socket alone")

        while sw.ports.count < PortSet.maxPorts { try sw.addPort(spec("sink")) }
        XCTAssertThrowsError(try sw.addPort(spec("sink:name=one-too-many"))) {
            XCTAssertEqual($0 as? SwitchError, .full)
        }
    }

    /// What a removed port held outside Ferry goes: the vhost socket, its front-end, a TAP Ferry created.
    func testARemovedPortLetsGoOfItsSocketAndItsTap() throws {
        let sw = try makeSwitch(["sink:name=a"])
        let guestSocket = socketPath("gone")
        defer { unlink(guestSocket) }
        let tapName = "flive\(getpid() % 100_000)"
        weak var endpoint: VhostUserEndpoint?
        weak var tap: TapPort?
        do {
            let v = try sw.addPort(spec("vhost:\(guestSocket),name=v"))
            let t = try sw.addPort(spec("tap:\(tapName),name=t"))
            guard case .vhost(let vhost) = v.port, case .tap(let tapPort) = t.port else { return XCTFail() }
            (endpoint, tap) = (vhost.endpoint, tapPort)
        }
        XCTAssertEqual(access(guestSocket, F_OK), 0)
        XCTAssertNotEqual(if_nametoindex(tapName), 0)

        try sw.removePort(named: "v")
        try sw.removePort(named: "t")
        XCTAssertNotEqual(access(guestSocket, F_OK), 0, "the socket file is removed")
        XCTAssertEqual(if_nametoindex(tapName), 0, "the TAP Ferry created is deleted")
        sw.control.runOnce()
        XCTAssertNil(endpoint, "nothing, the control loop included, holds the endpoint any more")
        XCTAssertNil(tap, "nor the TAP: no worker table or watcher names it")
    }

    /// The direct TAP → guest path applies while the guest is the TAP VLAN's
    /// only other member; a third member joining turns it off, leaving turns it on again.
    func testTheDirectTapPathFollowsTheVLANsMembers() throws {
        let guestSocket = socketPath("direct")
        defer { unlink(guestSocket) }
        let tapName = "fdir\(getpid() % 100_000)"
        let sw = try makeSwitch(["tap:\(tapName),name=t,vlan=5", "vhost:\(guestSocket),name=v,vlan=5"])
        func directPeers() -> [Int?] { sw.workers[0].sources.filter { $0.index == 0 }.map(\.directPeer) }
        XCTAssertEqual(directPeers(), [1])
        try sw.addPort(spec("sink:name=s,vlan=5"))
        XCTAssertEqual(directPeers(), [nil])
        try sw.removePort(named: "s")
        XCTAssertEqual(directPeers(), [1])
        try sw.removePort(named: "v")
        XCTAssertEqual(directPeers(), [nil])
        XCTAssertEqual(sw.workers[0].ports.count, 1, "the table ends at the highest number in use")
        sw.stop()
    }

    /// An xdp uplink added while Ferry runs steers every address already known
    /// behind other ports; removed, its program leaves the interface. A packet
    /// port removed lets go of its sockets. Needs root for the veth pairs.
    func testUplinksAddedLaterSteerKnownAddressesAndRemovedOnesLetGo() throws {
        try NetworkSandbox.requireTapSupport()
        let xdpLink = try VethPair("lx")
        let packetLink = try VethPair("lp")
        let sw = try makeSwitch(["sink:name=a", "sink:name=b,trunk=10"])
        let known = MACAddress("52:54:00:00:00:0a")!
        let tagged = MACAddress("52:54:00:00:00:0b")!
        // Learned now: the control loop's passes below also age the table.
        let now = MonotonicClock.seconds()
        _ = sw.database.learn(FDBKey(vlan: 1, mac: known), port: 0, now: now)
        _ = sw.database.learn(FDBKey(vlan: 10, mac: tagged), port: 1, now: now)

        weak var program: AnyObject?
        weak var packetPort: PacketPort?
        do {
            let up = try sw.addPort(spec("xdp:\(xdpLink.name),name=up,mode=generic,zerocopy=off"))
            let pk = try sw.addPort(spec("packet:\(packetLink.name),name=pk"))
            guard case .xdp(let x) = up.port, case .packet(let p) = pk.port else { return XCTFail() }
            (program, packetPort) = (x.steering, p)
            XCTAssertEqual(x.steering.guests().map(\.0), [known], "the uplink's VLAN only, untagged on the wire")
            // Learned after the uplink came: steered on the control loop's next pass, as before.
            _ = sw.database.learn(FDBKey(vlan: 1, mac: tagged), port: 1, now: now)
            sw.control.runOnce()
            XCTAssertEqual(Set(x.steering.guests().map(\.0)), [known, tagged])
        }
        try sw.removePort(named: "up")
        try sw.removePort(named: "pk")
        sw.control.runOnce()
        XCTAssertNil(program, "the steering program, detached, is let go")
        XCTAssertNil(packetPort, "the packet port and its sockets are let go")
        let attached = try NetworkSandbox.ip("-d", "link", "show", xdpLink.name)
        XCTAssertFalse(attached.contains("prog/xdp"), attached)
    }

    /// Polls `condition` for up to 60 s; a functional bound on a shared, slow machine, not a measurement.
    private func waitUntil(_ condition: () -> Bool) -> Bool {
        for _ in 0..<6000 {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }
}
