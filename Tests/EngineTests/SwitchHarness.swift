import Glibc
import Model
import Packets
import Platform
import Ports
import Switching
import TestSupport
import VhostUser
import Virtio

@testable import Engine

/// A guest on a vhost port, driven by a mock front-end over test guest RAM.
final class TestGuest {
    let path: String
    let device: VhostDevice
    let endpoint: VhostUserEndpoint
    let port: VhostPort
    let frontEnd: MockFrontEnd

    init(_ name: String, log: CapturedLog, withoutFeatures: UInt64 = 0, packed: Bool = false) throws {
        path = "/tmp/ferry-engine-\(getpid())-\(name).sock"
        unlink(path)
        device = VhostDevice(name: name, gate: UngatedDataPath(), logger: log.logger)
        endpoint = try VhostUserEndpoint(path: path, mode: .server, device: device, logger: log.logger)
        port = VhostPort(endpoint: endpoint)
        frontEnd = try MockFrontEnd(device: device, packed: packed)
        frontEnd.setUp(withoutFeatures: withoutFeatures)
    }

    deinit { unlink(path) }

    /// Sends a frame from the guest (with a virtio-net header, zero by default).
    func send(_ frame: [UInt8], header: [UInt8] = [UInt8](repeating: 0, count: 12), split: [Int]? = nil) {
        frontEnd.transmitRing.offerTX(frame: frame, header: header, split: split)
    }

    /// Posts receive buffers.
    func postBuffers(_ n: Int, size: Int = 2048) {
        for _ in 0..<n { frontEnd.receiveRing.offerRX(bufferSizes: [size]) }
    }

    /// Frames the switch delivered since the last call.
    func received() -> [ReceivedFrame] { frontEnd.receiveRing.receive() }

    var counters: CounterSnapshot { port.counters[0].snapshot }

    /// Receive chains posted and not yet taken, on either ring layout.
    var postedBuffers: Int { device.receiveQueue(0).postedBuffers(atMost: Int.max) }
}

/// One worker and its bridge, without threads: the test calls `pass()` and
/// `learn()` (the control thread's part) itself.
final class SwitchHarness {
    let bridge: Bridge
    let worker: Worker
    let learning: LearningService
    let batch: PacketBatch

    /// `groupForwardMasks[i]`: port i's (`.none` for the ports past the list's end);
    /// `underlays[i]`: the uplink vxlan port i sends through (`via=`).
    init(_ ports: [(Port, VLANMode)], batchSize: Int = 64, fdbCapacity: Int = 1024,
         groupForwardMasks: [GroupForwardMask] = [], underlays: [Int: Int] = [:]) throws {
        bridge = Bridge(database: ForwardingDatabase(capacity: fdbCapacity))
        worker = Worker(id: 0, cpu: nil, batchSize: batchSize, bridge: bridge)
        bridge.setMembership(ports.map(\.1))
        var sources: [WorkerSource] = []
        for (i, (port, _)) in ports.enumerated() {
            for q in 0..<port.queueCount { sources.append(WorkerSource(index: PortIndex(truncating: i), port: port, queue: q)) }
        }
        let table = ports.enumerated().map { i, p in
            WorkerPort(port: p.0, vlan: p.1, transmitQueue: 0,
                       groupForwardMask: i < groupForwardMasks.count ? groupForwardMasks[i] : .none,
                       underlay: underlays[i] ?? -1,
                       tunnelPorts: underlays.filter { $0.value == i }.map(\.key).sorted())
        }
        worker.configure(ports: table, sources: sources)
        learning = LearningService(bridge: bridge, queues: [worker.learning])
        batch = PacketBatch(capacity: batchSize, segmentsPerFrame: Worker.segmentsPerFrame)
    }

    /// One pass of the worker, then what the control thread does when the doorbell rings.
    @discardableResult
    func pass() -> Int {
        let n = worker.forwardOnce(batch)
        learning.learn()
        return n
    }
}

/// An Ethernet frame from `source` to `destination`, optionally 802.1Q-tagged, `length` bytes in all.
func frame(from source: String, to destination: String, vlan: UInt16? = nil, length: Int = 64, seed: UInt8 = 0) -> [UInt8] {
    var f = MACAddress(destination)!.array + MACAddress(source)!.array
    if let vlan { f += [0x81, 0x00, UInt8(vlan >> 8), UInt8(vlan & 0xFF)] }
    f += [0x08, 0x00]
    // The payload pattern counts from the payload's start, so a tagged frame
    // equals its untagged twin with the 4 tag bytes inserted.
    var i = 0
    while f.count < length {
        f.append(UInt8(truncatingIfNeeded: i &* 7) &+ seed)
        i += 1
    }
    return f
}
