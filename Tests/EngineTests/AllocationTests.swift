import Foundation
import Glibc
import Logging
import MallocInterposerSwift
import Model
import Packets
@testable import Ports
import TestSupport
import Platform
import Switching
import VhostUser
import Virtio
import XCTest

@testable import Engine

/// Proves the per-burst path allocates nothing. Counting mallocs needs the
/// interposer loaded before main, so the test re-runs itself in a child
/// process with LD_PRELOAD and checks what the child measured.
final class AllocationTests: XCTestCase {
    static let probeVariable = "FERRY_ALLOCATION_PROBE"

    func testForwardedBurstsAllocateNothing() throws {
        try runUnderInterposer(test: "testForwardedBurstsAllocateNothing") {
            let gen = Port.gen(GenPort(destination: MACAddress.broadcast, source: MACAddress(2, 0, 0, 0, 0, 1),
                                       frameSize: 64, count: nil))
            let sink = Port.sink(SinkPort())
            let sw = try SwitchHarness([(gen, .access(1)), (sink, .access(1))], batchSize: 256)
            return (prepare: {}, burst: { for _ in 0..<1000 { _ = sw.worker.forwardOnce(sw.batch) } })
        }
    }

    /// Through the switch with VLANs: a generator on an access port floods to
    /// an access port and a trunk, so every burst is split per port and tagged
    /// by reference; learning refreshes the generator's address every burst.
    func testSwitchedTaggedBurstsAllocateNothing() throws {
        try runUnderInterposer(test: "testSwitchedTaggedBurstsAllocateNothing") {
            let gen = Port.gen(GenPort(destination: MACAddress.broadcast, source: MACAddress(2, 0, 0, 0, 0, 1),
                                       frameSize: 64, count: nil))
            // Checked outside the counted region: a snapshot allocates.
            return try floodingToAccessAndTrunk(from: gen) { access, trunk in
                precondition(trunk.counters.snapshot.txPackets > 0 && access.counters.snapshot.txPackets > 0,
                             "the burst did not reach both ports")
            }
        }
    }

    /// The lab's traffic: an IMIX of 16 flows, every frame stamped with its sequence number
    /// and send time, read back by an access sink and by a trunk sink (its frames tagged by
    /// reference, so the analyser gathers their first bytes): no allocation per frame.
    func testStampedTrafficAndItsAnalysisAllocateNothing() throws {
        try runUnderInterposer(test: "testStampedTrafficAndItsAnalysisAllocateNothing") {
            let gen = Port.gen(GenPort(GeneratorSpec(destination: MACAddress.broadcast, sizes: .imix, flows: 16),
                                       batchCapacity: 256))
            return try floodingToAccessAndTrunk(from: gen) { access, trunk in
                precondition(trunk.analyser.snapshot.stamped > 0 && access.analyser.snapshot.lost == 0,
                             "the analysers did not read the stamps")
            }
        }
    }

    /// `gen` on an access port of VLAN 5 flooding to an access sink and a trunk sink of it,
    /// 1000 passes a burst; `check` looks at both sinks before every burst but the first.
    private func floodingToAccessAndTrunk(from gen: Ports.Port, check: @escaping (SinkPort, SinkPort) -> Void) throws
        -> (prepare: () -> Void, burst: () -> Void)
    {
        let access = SinkPort()
        let trunk = SinkPort()
        let sw = try SwitchHarness([(gen, .access(5)), (.sink(access), .access(5)), (.sink(trunk), .trunk([5]))],
                                   batchSize: 256)
        _ = sw.pass()
        var bursts = 0
        return (prepare: {
            if bursts > 0 { check(access, trunk) }
        }, burst: {
            for _ in 0..<1000 { _ = sw.worker.forwardOnce(sw.batch) }
            bursts += 1
        })
    }

    /// A vxlan port both ways: a generator floods to it, it sends each frame as a datagram
    /// to its one remote VTEP, which is its own address, so the datagrams come back in, are
    /// checked, learned behind their VTEP and flooded to the generator.
    func testTunneledBurstsAllocateNothing() throws {
        try runUnderInterposer(test: "testTunneledBurstsAllocateNothing") {
            let gen = GenPort(destination: MACAddress.broadcast, source: MACAddress(2, 0, 0, 0, 0, 1),
                              frameSize: 64, count: nil)
            let loopback = InternetAddress("127.0.0.1")!
            let vxlan = try VxlanPort(vni: 9, local: loopback, remotes: [loopback], udpPort: UDPPeer.testPort &+ 5,
                                      batchCapacity: 256)
            let sw = try SwitchHarness([(.gen(gen), .access(1)), (.vxlan(vxlan), .access(1))], batchSize: 256)
            _ = sw.pass()
            return (prepare: {
                precondition(vxlan.counters[0].snapshot.txPackets > 0, "nothing went into the tunnel")
            }, burst: {
                for _ in 0..<100 { _ = sw.worker.forwardOnce(sw.batch) }
                precondition(vxlan.endpoints.counters(1).rxPackets > 0, "nothing came out of the tunnel")
            })
        }
    }

    /// A generator's broadcasts into a vxlan port that sends through an xdp
    /// uplink (`via=`): encapsulated by reference, copied into UMEM frames by the
    /// uplink, flooded to two VTEPs (one resolved, one counted unresolved); and
    /// VXLAN datagrams from the wire steered to the uplink, set apart, decapsulated
    /// and switched as the vxlan port's. Needs root for the veth (the child makes it).
    func testTunneledBurstsThroughAnXdpUplinkAllocateNothing() throws {
        try NetworkSandbox.requireTapSupport()
        let removeVeth: (Int32) -> Void = { pid in _ = try? NetworkSandbox.ip("netns", "del", "ferry-pk-\(pid)-alv") }
        try runUnderInterposer(test: "testTunneledBurstsThroughAnXdpUplinkAllocateNothing", afterChild: removeVeth) {
            let wire = try VethPair("alv")
            let xdp = try XdpPort(interface: wire.name, queues: 1, attach: .auto, zeroCopy: .auto, guestCapacity: 64,
                                  batchCapacity: 256, logger: Logger(label: "alloc"))
            let gen = GenPort(destination: MACAddress.broadcast, source: MACAddress(2, 0, 0, 0, 0, 1),
                              frameSize: 64, count: nil)
            let vxlan = try VxlanPort(vni: 11, local: InternetAddress("127.0.0.1")!,
                                      remotes: [InternetAddress("127.0.0.2")!, InternetAddress("127.0.0.3")!],
                                      udpPort: UDPPeer.testPort &+ 7, via: "up", batchCapacity: 256)
            vxlan.underlay!.publish(1, nextHopMAC: 0x0200_0000_00fe)
            try xdp.steerTunnel(local: InternetAddress("127.0.0.1")!, udpPort: UDPPeer.testPort &+ 7)
            let sw = try SwitchHarness([(.gen(gen), .access(1)), (.vxlan(vxlan), .access(1)), (.xdp(xdp), .access(4094))],
                                       batchSize: 256, underlays: [1: 2])
            let peer = try wire.peerSocket()
            let mac = try NetworkInterface.hardwareAddress(of: wire.name).array
            let inner = frame(from: "02:00:00:00:00:0c", to: "02:00:00:00:00:0d", length: 64)
            let payload = vxlanHeader(vni: 11) + inner
            let udpPort = UDPPeer.testPort &+ 7
            let udpLength = 8 + payload.count
            let datagram = mac + [2, 0, 0, 0, 0, 0x63, 0x08, 0x00]
                + [0x45, 0, 0, UInt8(20 + udpLength), 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 2, 127, 0, 0, 1]
                + [0xC3, 0x50, UInt8(udpPort >> 8), UInt8(udpPort & 0xff), 0, UInt8(udpLength), 0, 0] + payload
            _ = sw.pass()
            var rounds = 0
            return (prepare: {
                withExtendedLifetime(wire) {}
                precondition(xdp.counters[0].snapshot.txPackets > 0, "nothing left through the uplink")
                precondition(vxlan.counters[0].snapshot.drops[.vxlanUnresolvedVTEP, default: 0] > 0,
                             "the unresolved VTEP was not counted")
                precondition(rounds < 2 || vxlan.counters[1].snapshot.rxPackets > 0, "nothing came in through the uplink")
                // Uncounted: what the wire got, and datagrams for the uplink to take in the burst.
                while (try? peer.receive(timeout: 0)) ?? nil != nil {}
                for _ in 0..<8 { try! peer.send(datagram) }
            }, burst: {
                for _ in 0..<20 { _ = sw.worker.forwardOnce(sw.batch) }
                rounds += 1
            })
        }
    }

    /// A guest's TSO super-frames to a vxlan port: cut straight into the port's
    /// send arena and sent as one segmented message each (UDP GSO) to its one
    /// remote VTEP, its own address, so the segments come back in as datagrams.
    func testTunneledSuperFramesAllocateNothing() throws {
        try runUnderInterposer(test: "testTunneledSuperFramesAllocateNothing") {
            let sender = try TestGuest("alloc-vx-gso", log: CapturedLog())
            let loopback = InternetAddress("127.0.0.1")!
            let vxlan = try VxlanPort(vni: 10, local: loopback, remotes: [loopback], udpPort: UDPPeer.testPort &+ 6,
                                      batchCapacity: 64)
            let sw = try SwitchHarness([(.vhost(sender.port), .access(1)), (.vxlan(vxlan), .access(1))], batchSize: 64)
            let gso = GSOTestFrame(payloadLength: 8000, segmentSize: 1448)
            var header = [UInt8](repeating: 0, count: 12)
            header.withUnsafeMutableBytes { gso.header.store(to: $0.baseAddress!) }
            var rounds = 0
            return (prepare: {
                // Uncounted: a snapshot, what came back, new buffers and frames.
                precondition(rounds < 2 || vxlan.counters[0].snapshot.offloads[.segmentsOut, default: 0] > 0,
                             "no super-frame was cut into the tunnel")
                _ = sender.received()
                sender.postBuffers(32 - sender.port.device.queues[0].postedBuffers)
                sender.send(gso.bytes, header: header)
                sender.send(gso.bytes, header: header)
            }, burst: {
                for _ in 0..<2 { _ = sw.worker.forwardOnce(sw.batch) }
                rounds += 1
            })
        }
    }

    /// Link-local frames the ingress port does not forward: each is checked and
    /// counted (`link_local`) without allocating.
    func testDroppedLinkLocalBurstsAllocateNothing() throws {
        try runUnderInterposer(test: "testDroppedLinkLocalBurstsAllocateNothing") {
            let lldp = MACAddress(0x01, 0x80, 0xC2, 0x00, 0x00, 0x0E)
            let gen = Port.gen(GenPort(destination: lldp, source: MACAddress(2, 0, 0, 0, 0, 1), frameSize: 64, count: nil))
            let sink = SinkPort()
            let sw = try SwitchHarness([(gen, .access(1)), (.sink(sink), .access(1))], batchSize: 256)
            _ = sw.pass()
            return (prepare: {
                precondition(sink.counters.snapshot.txPackets == 0, "a link-local frame crossed")
                precondition(gen.counters(queue: 0).snapshot.drops[.linkLocal, default: 0] > 0, "none was counted")
            }, burst: { for _ in 0..<1000 { _ = sw.worker.forwardOnce(sw.batch) } })
        }
    }

    /// A switch wider than one word of port numbers: a generator's unicast to
    /// port 900 (a static entry) takes the one-port path, another's broadcast
    /// floods to ports 100 and 1000 (two words apart) through the gathered port
    /// set; both allocate nothing.
    func testBurstsBetweenPortsPastOneWordAllocateNothing() throws {
        try runUnderInterposer(test: "testBurstsBetweenPortsPastOneWordAllocateNothing") {
            let station = MACAddress(2, 0, 0, 0, 9, 0)
            let unicast = GenPort(destination: station, source: MACAddress(2, 0, 0, 0, 0, 1), frameSize: 64, count: nil)
            let flood = GenPort(destination: MACAddress.broadcast, source: MACAddress(2, 0, 0, 0, 0, 2), frameSize: 64,
                                count: nil)
            let far = SinkPort(), middle = SinkPort(), last = SinkPort()
            var ports: [(Ports.Port, VLANMode)] = [(.gen(unicast), .access(1)), (.gen(flood), .access(3))]
            // Every other port sits in a VLAN of its own: numbers, not members.
            while ports.count <= 1000 { ports.append((.sink(SinkPort()), .access(2))) }
            ports[900] = (.sink(far), .access(1))
            ports[100] = (.sink(middle), .access(3))
            ports[1000] = (.sink(last), .access(3))
            let sw = try SwitchHarness(ports, batchSize: 256)
            precondition(sw.bridge.database.addStatic(FDBKey(vlan: 1, mac: station.bits48), port: 900))
            _ = sw.pass()
            var rounds = 0
            return (prepare: {
                precondition(rounds == 0 || [far, middle, last].allSatisfy { $0.counters.snapshot.txPackets > 0 },
                             "a burst did not reach its ports")
            }, burst: {
                for _ in 0..<100 { _ = sw.worker.forwardOnce(sw.batch) }
                rounds += 1
            })
        }
    }

    /// Offloads adapted on the way: a guest sends TSO super-frames to guests
    /// without GUEST_TSO on a split and on a packed ring (segmented straight
    /// into their chains) and to a sink (passed whole), and partial checksums
    /// to a guest without GUEST_CSUM (finished in a slot).
    func testSegmentedAndCompletedBurstsAllocateNothing() throws {
        try runUnderInterposer(test: "testSegmentedAndCompletedBurstsAllocateNothing") {
            let log = CapturedLog()
            let sender = try TestGuest("alloc-gso-a", log: log)
            let noTSO = VirtioNetFeatures.guestTSO4.rawValue | VirtioNetFeatures.guestTSO6.rawValue
            let receiver = try TestGuest("alloc-gso-b", log: log, withoutFeatures: noTSO)
            let plain = try TestGuest("alloc-gso-c", log: log,
                                      withoutFeatures: noTSO | VirtioNetFeatures.guestCsum.rawValue)
            let packed = try TestGuest("alloc-gso-d", log: log, withoutFeatures: noTSO, packed: true)
            let sink = SinkPort()
            let sw = try SwitchHarness([(.vhost(sender.port), .access(1)), (.vhost(receiver.port), .access(1)),
                                        (.vhost(plain.port), .access(1)), (.sink(sink), .access(1)),
                                        (.vhost(packed.port), .access(1))], batchSize: 64)
            let gso = GSOTestFrame(payloadLength: 8000, segmentSize: 1448)
            var header = [UInt8](repeating: 0, count: 12)
            header.withUnsafeMutableBytes { gso.header.store(to: $0.baseAddress!) }
            var rounds = 0
            return (prepare: {
                // Uncounted: what the guests got, new buffers, new frames.
                let got = receiver.received().count + plain.received().count + packed.received().count
                precondition(rounds == 0 || got == 3 * 2 * 6, "the bursts did not deliver: \(got)")
                for guest in [receiver, plain, packed] { guest.postBuffers(32 - guest.postedBuffers) }
                sender.send(gso.bytes, header: header)
                sender.send(gso.bytes, header: header)
            }, burst: {
                _ = sw.worker.forwardOnce(sw.batch)
                rounds += 1
            })
        }
    }

    /// A running capture on both ends (rx of the generator, tx to the trunk):
    /// every frame is also copied into the worker's capture ring, and the
    /// copies stay allocation-free. The ring is drained between rounds, uncounted.
    func testCapturedBurstsAllocateNothing() throws {
        try runUnderInterposer(test: "testCapturedBurstsAllocateNothing") {
            let gen = Port.gen(GenPort(destination: MACAddress.broadcast, source: MACAddress(2, 0, 0, 0, 0, 1),
                                       frameSize: 64, count: nil))
            let trunk = SinkPort()
            let sw = try SwitchHarness([(gen, .access(5)), (.sink(SinkPort()), .access(5)), (.sink(trunk), .trunk([5]))],
                                       batchSize: 256)
            sw.bridge.capture.select(receiving: [0], transmitting: [2], snapLength: 128)
            var copies = 0
            return (prepare: {
                sw.worker.captureRing.drain { _ in copies += 1 }
                precondition(copies == 0 || copies > 1000, "the capture copied nothing")
            }, burst: {
                for _ in 0..<10 { _ = sw.worker.forwardOnce(sw.batch) }
            })
        }
    }

    /// Guest to guest: pull a burst from one guest's TX ring, copy it into
    /// another guest's RX ring, release the TX buffers, publish, notify.
    func testGuestToGuestBurstsAllocateNothing() throws {
        try runUnderInterposer(test: "testGuestToGuestBurstsAllocateNothing") {
            let rings = try GuestToGuestRings()
            let txRing = MockSplitRing(ram: rings.ram, size: 256, at: rings.txRingGPA, buffers: rings.txBuffers)
            let tx = SplitVirtqueue(index: 1)
            let rx = rings.rx
            txRing.configure(tx, eventIndex: true)
            // Held by the burst: the rings signal it until the last burst.
            let call = DescriptorSlot(try EventFD.create())
            rx.callFD = call.rawValue
            tx.callFD = call.rawValue
            try rings.start(tx)
            return guestToGuest(from: .split(tx), txRing, to: .split(rx), rings.rxRing) {
                precondition(!call.isEmpty, "the burst did not notify")
            }
        }
    }

    /// Ferry as the driver (`virtio-user`) against its own vhost back-end: a burst pushed
    /// into the port's transmit ring (descriptors taken back from the last burst first), the
    /// back-end's burst pulled from its receive ring and its buffers posted again.
    func testVirtioUserBurstsAllocateNothing() throws {
        try runUnderInterposer(test: "testVirtioUserBurstsAllocateNothing") {
            let path = "/tmp/ferry-alloc-vu-\(getpid()).sock"
            let log = CapturedLog()
            let device = VhostDevice(name: "dut", logger: log.logger)
            let endpoint = try VhostUserEndpoint(path: path, mode: .server, device: device, logger: log.logger)
            let port = try VirtioUserPort(path: path, server: false, queueSize: 256, name: "vu",
                                          gate: UngatedDataPath(), logger: log.logger)
            for _ in 0..<500 where !(port.state == "running" && device.transmitQueue(0).isRunning) {
                port.service(now: MonotonicClock.now())
                endpoint.service(now: MonotonicClock.now())
                usleep(1000)
            }
            precondition(port.state == "running", "the port never ran: \(log.lines)")
            let counters = QueueCounters()
            let store = FrameStore()
            let outgoing = PacketBatch(capacity: 64)
            for i in 0..<64 { store.append(ethernetFrame(length: 64 + i), to: outgoing) }
            let incoming = PacketBatch(capacity: 64)
            let backEnd = PacketBatch(capacity: 64)
            var bursts = 0
            return (prepare: {
                // The back-end's side, uncounted: it takes what the port sent and sends it back.
                backEnd.reset()
                _ = device.transmitQueue(0).pull(into: backEnd, counters: counters)
                device.receiveQueue(0).push(from: backEnd, counters: counters)
                device.transmitQueue(0).release()
                precondition(bursts < 2 || incoming.count == 64, "the port pulled \(incoming.count) of 64")
                precondition(backEnd.count == (bursts == 0 ? 0 : 64), "the back-end got \(backEnd.count) of 64")
                // The frames live in the store; the back-end behind the endpoint.
                precondition(withExtendedLifetime(store) { endpoint.isConnected })
            }, burst: {
                port.push(queue: 0, from: outgoing)
                incoming.reset()
                _ = port.pull(queue: 0, into: incoming)
                port.release(queue: 0)
                bursts += 1
            })
        }
    }

    /// The guest-to-guest tests' memory: 8 MiB of guest RAM with a split RX ring
    /// (mergeable buffers, event index) in it, and the place for the TX ring
    /// (either layout) and its buffers, which the test adds.
    private struct GuestToGuestRings {
        let ram: GuestRAM
        let memory: GuestMemory
        let rxRing: MockSplitRing
        let rx = SplitVirtqueue(index: 0)

        init() throws {
            ram = try GuestRAM.oneRegion(size: 8 << 20)
            memory = try ram.makeGuestMemory()
            rxRing = MockSplitRing(ram: ram, size: 256, at: ram.base + 0x8000,
                                   buffers: ram.base + 0x200000 ..< ram.base + 0x800000)
            rxRing.configure(rx, eventIndex: true, mergeableBuffers: true)
        }

        var txRingGPA: UInt64 { ram.base }
        var txBuffers: Range<UInt64> { ram.base + 0x10000 ..< ram.base + 0x200000 }

        /// Starts `tx`, then the RX queue, on this memory.
        func start(_ tx: some VirtqueueControl) throws {
            try tx.start(memory: memory)
            try rx.start(memory: memory)
        }
    }

    /// 64 frames a burst from one guest's TX ring into another's RX ring: pull,
    /// push, release; `prepare` and `check` run before and after each burst.
    private func guestToGuest(from tx: Virtqueue, _ txRing: any MockDriverRing, to rx: Virtqueue,
                              _ rxRing: any MockDriverRing, prepare: @escaping () -> Void = {},
                              check: @escaping () -> Void) -> (prepare: () -> Void, burst: () -> Void) {
        let counters = QueueCounters()
        let batch = PacketBatch(capacity: 64)
        let frame = ethernetFrame(length: 64)
        return (prepare: {
            prepare()
            _ = txRing.usedEntries()
            for _ in 0..<64 {
                txRing.offerTX(frame: frame)
                rxRing.offerRX(bufferSizes: [2048])
            }
        }, burst: {
            batch.reset()
            _ = tx.pull(into: batch, counters: counters)
            rx.push(from: batch, counters: counters)
            tx.release()
            precondition(batch.count == 64 && rx.isRunning && tx.isRunning, "the burst did not forward")
            check()
        })
    }

    /// Guest to guest while a live migration logs, on packed rings into split
    /// ones: every write marks its page (buffers, used descriptors, the used
    /// ring) through `LoggedWrites`, and marking allocates nothing either.
    func testLoggedGuestToGuestBurstsAllocateNothing() throws {
        try runUnderInterposer(test: "testLoggedGuestToGuestBurstsAllocateNothing") {
            let rings = try GuestToGuestRings()
            let txRing = MockPackedRing(ram: rings.ram, size: 256, at: rings.txRingGPA, buffers: rings.txBuffers)
            let tx = PackedVirtqueue(index: 1)
            let rx = rings.rx
            txRing.configure(tx, eventIndex: true)
            let logFile = try SharedMemory(length: 0x10000, name: "ferry-alloc-log")
            let log = try DirtyPageLog(fd: logFile.fd.rawValue, size: 0x10000, offset: 0)
            tx.configuration.setDirtyLog(log, usedRing: nil)
            rx.configuration.setDirtyLog(log, usedRing: GuestAddress(rings.rxRing.usedGPA))
            try rings.start(tx)
            // The front-end clears the log between bursts; each burst marks the used descriptors' page again.
            return guestToGuest(from: .packed(tx), txRing, to: .split(rx), rings.rxRing,
                                prepare: { memset(logFile.base, 0, logFile.length) }) {
                precondition(log.isMarked(page: txRing.ringGPA / DirtyPageLog.pageSize), "nothing was marked")
            }
        }
    }

    /// Guest to guest into a packed RX ring, 64-byte frames into single
    /// buffers: the push's fast path (four frames per line of descriptors),
    /// with the dirty log off and then on (buffers and used descriptors marked).
    func testBurstsIntoPackedRingLinesAllocateNothing() throws {
        try runUnderInterposer(test: "testBurstsIntoPackedRingLinesAllocateNothing") {
            let ram = try GuestRAM.oneRegion(size: 8 << 20)
            let memory = try ram.makeGuestMemory()
            let txRing = MockSplitRing(ram: ram, size: 256, at: ram.base, buffers: ram.base + 0x10000 ..< ram.base + 0x200000)
            let rxRing = MockPackedRing(ram: ram, size: 256, at: ram.base + 0x8000, buffers: ram.base + 0x200000 ..< ram.base + 0x800000)
            let tx = SplitVirtqueue(index: 1)
            let rx = PackedVirtqueue(index: 0)
            txRing.configure(tx, eventIndex: true)
            rxRing.configure(rx, eventIndex: true, mergeableBuffers: true)
            let logFile = try SharedMemory(length: 0x10000, name: "ferry-alloc-lines-log")
            let log = try DirtyPageLog(fd: logFile.fd.rawValue, size: 0x10000, offset: 0)
            try tx.start(memory: memory)
            try rx.start(memory: memory)
            var bursts = 0
            return guestToGuest(from: .split(tx), txRing, to: .packed(rx), rxRing, prepare: {
                // Half the bursts logged: the log is switched while the queue is quiesced, as the control plane does.
                // The warm-up's is (a push without a log never builds the logged path's burst, whose lazy
                // metadata would otherwise be made in a counted one).
                rx.configuration.setDirtyLog(bursts % 2 == 0 ? log : nil, usedRing: nil)
                memset(logFile.base, 0, logFile.length)
                precondition(bursts == 0 || rxRing.usedEntries().count == 64, "the burst did not reach the ring")
            }) {
                precondition(bursts % 2 == 1 || log.isMarked(page: rxRing.ringGPA / DirtyPageLog.pageSize),
                             "the logged burst marked nothing")
                bursts += 1
            }
        }
    }

    /// Through the switch between a guest on packed rings and one on split
    /// rings, both ways: the ports reach each layout through `Virtqueue`, one
    /// switch per burst, and neither allocates.
    func testPackedAndSplitGuestBurstsAllocateNothing() throws {
        try runUnderInterposer(test: "testPackedAndSplitGuestBurstsAllocateNothing") {
            let log = CapturedLog()
            let packed = try TestGuest("alloc-packed", log: log, packed: true)
            let split = try TestGuest("alloc-split", log: log)
            precondition(packed.device.packedRings && !split.device.packedRings, "the layouts were not negotiated")
            let sw = try SwitchHarness([(.vhost(packed.port), .access(1)), (.vhost(split.port), .access(1))],
                                       batchSize: 64)
            let toSplit = frame(from: "02:00:00:00:00:0a", to: "02:00:00:00:00:0b", length: 128)
            let toPacked = frame(from: "02:00:00:00:00:0b", to: "02:00:00:00:00:0a", length: 1400)
            var rounds = 0
            var delivered = 0
            return (prepare: {
                // Uncounted: what each guest got, new buffers and frames both ways.
                delivered += packed.received().count + split.received().count
                precondition(rounds < 2 || delivered >= (rounds - 1) * 16, "the bursts did not deliver: \(delivered)")
                sw.learning.learn()
                packed.postBuffers(8)
                split.postBuffers(8)
                for _ in 0..<8 {
                    packed.send(toSplit)
                    split.send(toPacked)
                }
            }, burst: {
                for _ in 0..<2 { _ = sw.worker.forwardOnce(sw.batch) }
                rounds += 1
            })
        }
    }

    /// TAP → guest with the kernel's copy only (Worker+Direct.swift): each
    /// burst reads frames with `readv` straight into the guest's RX chains,
    /// learns from the private header copy, publishes once. Needs root for the
    /// TAP (the child creates it; it goes when the child exits).
    func testDirectTapToGuestBurstsAllocateNothing() throws {
        try NetworkSandbox.requireTapSupport()
        try runUnderInterposer(test: "testDirectTapToGuestBurstsAllocateNothing") {
            let tap = try freshTap("d", mtu: 1500)
            // What the kernel sent while the link came up (IPv6 chatter) goes, uncounted.
            var scratch = [UInt8](repeating: 0, count: 65_536)
            while case .done = try scratch.withUnsafeMutableBytes({ raw in
                var iov = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
                return try tap.device.readv(queue: 0, &iov, count: 1)
            }) {}
            let guest = try TestGuest("alloc-direct", log: CapturedLog())
            let socket = try PacketSocket(interface: tap.device.index, ignoreOutgoing: true)
            let sw = try SwitchHarness([(.tap(tap), .access(1)), (.vhost(guest.port), .access(1))], batchSize: 64)
            precondition(sw.worker.sources[0].directPeer == 1, "the direct path does not apply")
            let frame = ethernetFrame(length: 128)
            var delivered = 0
            var bursts = 0
            return (prepare: {
                // Uncounted: the guest takes what it got, posts buffers, and the kernel gets frames to send.
                delivered += guest.received().count
                precondition(bursts == 0 || delivered >= bursts * 16, "the bursts did not deliver: \(delivered)")
                sw.learning.learn()
                guest.postBuffers(32 - guest.port.device.queues[0].postedBuffers)
                for _ in 0..<16 { try! socket.send(frame) }
                var pfd = pollfd(fd: tap.descriptor(queue: 0), events: Int16(POLLIN), revents: 0)
                _ = poll(&pfd, 1, 1000)
                usleep(2000)
            }, burst: {
                for _ in 0..<4 { _ = sw.worker.forwardOnce(sw.batch) }
                bursts += 1
                precondition(tap.bufferedFrames.load(ordering: .relaxed) == 0, "a frame went the usual way")
            })
        }
    }

    /// Into a TAP: a generator's bursts through the TAP's io_uring, every frame
    /// staged (copied whole, written as one buffer), then a lone frame with
    /// `write`, and one too long to stage with `writev`. Needs root for the TAP
    /// (the child creates it; it goes when the child exits).
    func testBurstsIntoATapAllocateNothing() throws {
        try NetworkSandbox.requireTapSupport()
        try runUnderInterposer(test: "testBurstsIntoATapAllocateNothing") {
            let tap = try freshTap("w", mtu: 9000)
            precondition(tap.writePath == .ioUring, "io_uring is enabled on the test machines")
            let gen = GenPort(destination: MACAddress(2, 0, 0, 0, 0, 2), source: MACAddress(2, 0, 0, 0, 0, 1),
                              frameSize: 64, count: nil)
            let sw = try SwitchHarness([(.gen(gen), .access(1)), (.tap(tap), .access(1))], batchSize: 64)
            let arena = FrameArena()
            let lone = PacketBatch(capacity: 1)
            arena.append(ethernetFrame(length: 128), cuts: [14], to: lone)
            let long = PacketBatch(capacity: 1)
            arena.append(ethernetFrame(length: TapPort.stagedFrameLimit + 100), cuts: [14], to: long)
            var sent: UInt64 = 0
            return (prepare: {
                // Uncounted: a snapshot allocates.
                let now = tap.counters[0].snapshot.txPackets
                precondition(sent == 0 || now > sent, "nothing reached the TAP")
                sent = now
            }, burst: {
                for _ in 0..<16 { _ = sw.worker.forwardOnce(sw.batch) }
                tap.push(queue: 0, from: lone)
                tap.push(queue: 0, from: long)
            })
        }
    }

    /// Guest ↔ NIC both ways through an AF_XDP uplink (UMEM frames out of the
    /// RX ring by reference, into the TX ring by one copy, completions and
    /// fill-ring returns, a TSO super-frame segmented straight into UMEM
    /// frames) and through an AF_PACKET uplink (ring blocks, TX slots,
    /// virtio-net headers both ways, a TSO super-frame passed whole to its
    /// kernel), and one with `offloads=off` that segments a super-frame
    /// straight into its TX slots. Needs root for the veths (the child makes them).
    func testUplinkBurstsAllocateNothing() throws {
        try NetworkSandbox.requireTapSupport()
        // The child exits without running deinits: its veths' namespaces are deleted here.
        let removeVeths: (Int32) -> Void = { pid in
            for suffix in ["alx", "alp", "alo"] { _ = try? NetworkSandbox.ip("netns", "del", "ferry-pk-\(pid)-\(suffix)") }
        }
        try runUnderInterposer(test: "testUplinkBurstsAllocateNothing", afterChild: removeVeths) {
            let xdpWire = try VethPair("alx")
            let packetWire = try VethPair("alp")
            let segmentingWire = try VethPair("alo")
            let xdp = try XdpPort(interface: xdpWire.name, queues: 1, attach: .auto, zeroCopy: .auto, guestCapacity: 64,
                                  batchCapacity: 64, logger: Logger(label: "alloc"))
            let packet = try PacketPort(interface: packetWire.name)
            let segmenting = try PacketPort(interface: segmentingWire.name, offloads: .off)
            let guest = try TestGuest("alloc-uplink", log: CapturedLog())
            // The guest on VLAN 1 with the xdp uplink, and again (same MAC) on VLAN 2 with the packet uplink.
            let guestMAC = "02:00:00:00:00:0a"
            let lanMAC = "02:00:00:00:00:0b"
            try xdp.steering.addGuest(MACAddress(guestMAC)!, vlan: 0)
            let wires = [try xdpWire.peerSocket(), try packetWire.peerSocket(), try segmentingWire.peerSocket()]
            let sw = try SwitchHarness([(.xdp(xdp), .access(1)), (.vhost(guest.port), .trunk([1, 2, 3])),
                                        (.packet(packet), .access(2)), (.packet(segmenting), .access(3))],
                                       batchSize: 64)
            let toGuest = frame(from: lanMAC, to: guestMAC, length: 128)
            let fromGuest = [frame(from: guestMAC, to: lanMAC, vlan: 1, length: 128),
                             frame(from: guestMAC, to: lanMAC, vlan: 2, length: 128)]
            // Flooded on VLAN 2 (its destination is unknown): the packet uplink takes it whole.
            let superFrame = GSOTestFrame(payloadLength: 8000, segmentSize: 1448, vlan: 2)
            var superHeader = [UInt8](repeating: 0, count: 12)
            superHeader.withUnsafeMutableBytes { superFrame.header.store(to: $0.baseAddress!) }
            // Segmented straight into the xdp port's UMEM frames, and into the `offloads=off` port's slots.
            let superFrames = [1, 3].map { GSOTestFrame(payloadLength: 8000, segmentSize: 1448, vlan: UInt16($0)) }
            var rounds = 0
            var delivered = 0
            return (prepare: {
                // The pairs live as long as the probe: dropping one deletes its namespace and veth.
                withExtendedLifetime((xdpWire, packetWire, segmentingWire)) {}
                // Uncounted: what the wires and the guest got, new buffers and frames both ways.
                delivered += guest.received().count
                for wire in wires { while (try? wire.receive(timeout: 0)) ?? nil != nil { delivered += 1 } }
                precondition(rounds < 2 || delivered >= (rounds - 1) * 12, "the bursts did not deliver: \(delivered)")
                precondition(rounds < 2 || packet.counters[0].snapshot.offloads[.gsoPassed, default: 0] > 0,
                             "no super-frame went whole to the packet uplink")
                precondition(rounds < 2 || (xdp.counters[0].snapshot.offloads[.segmentsOut, default: 0] > 0
                                            && segmenting.counters[0].snapshot.offloads[.segmentsOut, default: 0] > 0),
                             "no super-frame was segmented for the xdp or the offloads=off uplink")
                sw.learning.learn()
                guest.postBuffers(32 - guest.port.device.queues[0].postedBuffers)
                for i in 0..<4 {
                    guest.send(fromGuest[i % 2])
                    for wire in wires { try! wire.send(toGuest) }
                }
                guest.send(superFrame.bytes, header: superHeader)
                for frame in superFrames { guest.send(frame.bytes, header: superHeader) }
                usleep(2000)
            }, burst: {
                for _ in 0..<4 { _ = sw.worker.forwardOnce(sw.batch) }
                rounds += 1
            })
        }
    }

    /// A TAP of one queue and a 64-frame batch, made anew (one a crashed run left goes first),
    /// IPv6 off so the kernel sends nothing of its own.
    func freshTap(_ suffix: String, mtu: Int) throws -> TapPort {
        let name = NetworkSandbox.interfaceName("ferryal", suffix)
        NetworkSandbox.removeInterface(name)
        let tap = try TapPort(name: name, queues: 1, mtu: mtu, batchCapacity: 64)
        try NetworkSandbox.disableIPv6(name)
        return tap
    }

    /// In the parent: re-runs `test` with the interposer preloaded and asserts on
    /// the child's verdict. In the child: warms the burst up, then counts the
    /// mallocs of `rounds` more bursts (each `prepare` runs uncounted before its
    /// burst) on the thread that runs them (`MeasuringThreadAllocations`).
    /// `afterChild` runs in the parent with the child's pid, for what the child
    /// made that outlives it (a veth's namespace).
    func runUnderInterposer(test: String, rounds: Int = 20, file: StaticString = #filePath, line: UInt = #line,
                            afterChild: (Int32) -> Void = { _ in },
                            _ make: () throws -> (prepare: () -> Void, burst: () -> Void)) throws {
        if ProcessInfo.processInfo.environment[Self.probeVariable] == nil {
            let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            let lib = exe.deletingLastPathComponent().appendingPathComponent("libMallocInterposerSwift.so")
            guard FileManager.default.fileExists(atPath: lib.path) else {
                return XCTFail("malloc interposer not built at \(lib.path)", file: file, line: line)
            }
            let child = Process()
            child.executableURL = exe
            child.arguments = ["EngineTests.AllocationTests/\(test)"]
            var env = ProcessInfo.processInfo.environment
            env["LD_PRELOAD"] = lib.path
            env[Self.probeVariable] = "1"
            child.environment = env
            let out = Pipe()
            child.standardOutput = out
            child.standardError = out
            try child.run()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            child.waitUntilExit()
            afterChild(child.processIdentifier)
            XCTAssertEqual(child.terminationStatus, 0, "allocation probe failed:\n\(text)", file: file, line: line)
            XCTAssertTrue(text.contains("ALLOCATION-PROBE ok"), "no verdict from the probe:\n\(text)", file: file, line: line)
            return
        }
        let (prepare, burst) = try make()
        // Warm-up: lazy metadata and first-touch work happen here, not in the measured bursts.
        prepare()
        burst()
        // Only this thread's allocations count: the bursts run here, and other
        // threads (XCTest's dispatch workers) allocate when they please.
        // The probe must be able to fail: a deliberate allocation has to be seen.
        MallocInterposerSwift.initialize()
        MeasuringThreadAllocations.start()
        MallocInterposerSwift.hook()
        let canary = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
        MallocInterposerSwift.unhook()
        canary.deallocate()
        let seen = MeasuringThreadAllocations.stop().count
        XCTAssertGreaterThan(seen, 0, "the interposer is not counting", file: file, line: line)

        MallocInterposerSwift.initialize()
        MeasuringThreadAllocations.start()
        for _ in 0..<rounds {
            prepare()
            MallocInterposerSwift.hook()
            burst()
            MallocInterposerSwift.unhook()
        }
        let measured = MeasuringThreadAllocations.stop()
        let process = MallocInterposerSwift.getStatistics()
        XCTAssertEqual(measured.count, 0, "mallocs in the data path: \(measured.count) (\(measured.bytes) bytes); "
                           + "the whole process, other threads included: \(process)", file: file, line: line)
        if seen > 0 && measured.count == 0 { print("ALLOCATION-PROBE ok") }
    }
}
