import Foundation
import Glibc
import Packets
import Platform
import Ports
import TestSupport
import XCTest

/// TAP ports on real TAP interfaces: these tests need root and /dev/net/tun and
/// fail with the reason when either is missing. A packet socket bound to the
/// TAP stands for the kernel's side: what it sends, the kernel transmits on
/// the TAP and Ferry pulls; what Ferry pushes, it receives. Every interface and
/// namespace a test creates is removed again, also when the test fails.
final class TapPortTests: XCTestCase {
    override func setUpWithError() throws {
        try NetworkSandbox.requireTapSupport()
    }

    // MARK: Push

    func testPushedFramesReachTheKernelByteExact() throws {
        let port = try makePort("p")
        let socket = try PacketSocket(interface: port.device.index, ignoreOutgoing: true)
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 16)
        // Two segments per frame, cut at a different place each time.
        let frames = (0..<8).map { i in udpFrame(sourcePort: 1000 + UInt16(i), size: [60, 64, 100, 128, 256, 512, 1024, 1514][i]) }
        for (i, frame) in frames.enumerated() { arena.append(frame, cuts: [1 + i * 7], to: batch) }
        let before = try statistic(port, "rx_packets")

        port.push(queue: 0, from: batch)

        let snapshot = port.counters[0].snapshot
        XCTAssertEqual(snapshot.txPackets, 8)
        XCTAssertEqual(snapshot.txBytes, UInt64(frames.reduce(0) { $0 + $1.count }))
        XCTAssertEqual(snapshot.drops, [:])
        for (i, frame) in frames.enumerated() {
            let received = try XCTUnwrap(try socket.receive(timeout: 2), "frame \(i) never reached the kernel")
            XCTAssertEqual(received, frame, "frame \(i)")
        }
        XCTAssertNil(try socket.receive(timeout: 0.05), "no frame beyond the batch")
        XCTAssertEqual(try statistic(port, "rx_packets") - before, 8, "the TAP received exactly the batch")
    }

    func testAFrameWithMoreSegmentsThanAWriteTakesIsDroppedAndTheOthersGo() throws {
        let port = try makePort("s")
        let socket = try PacketSocket(interface: port.device.index, ignoreOutgoing: true)
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 4, segmentsPerFrame: 64)
        let small = udpFrame(sourcePort: 1, size: 200)
        let widest = udpFrame(sourcePort: 2, size: 300)
        let tooWide = udpFrame(sourcePort: 3, size: 300)
        arena.append(small, cuts: [], to: batch)
        arena.append(widest, cuts: Array(1..<TapPort.maxSegments), to: batch)
        arena.append(tooWide, cuts: Array(1...TapPort.maxSegments), to: batch)
        arena.append(small, cuts: [14], to: batch)
        XCTAssertEqual(batch.segmentCount(of: 1), TapPort.maxSegments)
        XCTAssertEqual(batch.segmentCount(of: 2), TapPort.maxSegments + 1)

        port.push(queue: 0, from: batch)

        let snapshot = port.counters[0].snapshot
        XCTAssertEqual(snapshot.txPackets, 3)
        XCTAssertEqual(snapshot.drops, [.tooManySegments: 1])
        XCTAssertEqual(try socket.receive(timeout: 2), small)
        XCTAssertEqual(try socket.receive(timeout: 2), widest, "a frame of exactly maxSegments segments is whole")
        XCTAssertEqual(try socket.receive(timeout: 2), small)
        XCTAssertNil(try socket.receive(timeout: 0.05))
    }

    /// tun refuses a virtio-net header with an unknown gso_type (EINVAL) and
    /// any write while the link is down (EIO); each costs only its own frame.
    func testAFrameTheKernelRefusesIsAnIOErrorAndTheNextStillGoes() throws {
        let port = try makePort("e")
        let socket = try PacketSocket(interface: port.device.index, ignoreOutgoing: true)
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 4)
        let good = udpFrame(sourcePort: 7, size: 90)
        arena.append(good, cuts: [], to: batch)
        arena.append(good, cuts: [], to: batch)
        batch.header(1).storeBytes(of: 0x55, toByteOffset: 1, as: UInt8.self)
        arena.append(good, cuts: [30], to: batch)
        XCTAssertEqual(port.lastError, 0)

        port.push(queue: 0, from: batch)

        XCTAssertEqual(port.counters[0].snapshot.txPackets, 2)
        XCTAssertEqual(port.counters[0].snapshot.drops, [.ioError: 1])
        XCTAssertEqual(port.lastError, EINVAL)
        XCTAssertEqual(try socket.receive(timeout: 2), good)
        XCTAssertEqual(try socket.receive(timeout: 2), good)
        XCTAssertNil(try socket.receive(timeout: 0.05))

        try NetworkSandbox.ip("link", "set", port.device.name, "down")
        batch.reset()
        arena.append(good, cuts: [], to: batch)
        arena.append(good, cuts: [], to: batch)
        port.push(queue: 0, from: batch)
        XCTAssertEqual(port.counters[0].snapshot.txPackets, 2)
        XCTAssertEqual(port.counters[0].snapshot.drops, [.ioError: 3])
        XCTAssertEqual(port.lastError, EIO)
    }

    /// The TAP sits on a bridge whose only other port is a veth with a qdisc
    /// that sends one frame per 1000 s: frames Ferry writes stay in the
    /// kernel and count against the TAP's send buffer until writes return EAGAIN.
    func testAFullSendBufferDropsTheRestOfTheBurstAsTxFull() throws {
        let name = NetworkSandbox.interfaceName("ferrytp", "f")
        let namespace = try NetworkSandbox.Namespace("ferry-tp-\(getpid())")
        defer { namespace.delete() }
        let port = try makePort("f")
        try port.device.setSendBuffer(bytes: 16_384)
        // Moving the TAP takes it down; its descriptors stay attached, and it
        // goes when the namespace does.
        try NetworkSandbox.ip("link", "set", name, "netns", namespace.name)
        try namespace.ip("link", "add", "br0", "type", "bridge")
        try namespace.ip("link", "add", "v0", "type", "veth", "peer", "name", "v1")
        try namespace.ip("link", "set", name, "master", "br0")
        try namespace.ip("link", "set", "v0", "master", "br0")
        for device in ["br0", "v0", "v1", name] { try namespace.ip("link", "set", device, "up") }
        let destination = "02:00:00:00:00:77"
        try namespace.exec(NetworkSandbox.bridgePath, "fdb", "add", destination, "dev", "v0", "master", "static")
        try namespace.exec(NetworkSandbox.tcPath, "qdisc", "add", "dev", "v0", "root", "tbf",
                           "rate", "8bit", "burst", "1600", "limit", "10000000")

        let arena = FrameArena()
        let batch = PacketBatch(capacity: 64)
        // To the static entry, and not IPv4: with br_netfilter loaded, the
        // bridge would hand IPv4 frames to iptables rather than straight to v0.
        // 0x88B5 is the IEEE 802 local experimental EtherType.
        var frame = udpFrame(sourcePort: 9, size: 1000)
        frame.replaceSubrange(0..<6, with: [2, 0, 0, 0, 0, 0x77])
        frame.replaceSubrange(12..<14, with: [0x88, 0xB5])
        for _ in 0..<64 { arena.append(frame, cuts: [], to: batch) }

        port.push(queue: 0, from: batch)

        let snapshot = port.counters[0].snapshot
        let full = snapshot.drops[.txFull] ?? 0
        XCTAssertGreaterThan(snapshot.txPackets, 0, "the send buffer takes a few frames")
        XCTAssertGreaterThan(full, 0, "then the kernel says EAGAIN")
        XCTAssertEqual(snapshot.txPackets + full, 64, "every frame after the first EAGAIN counts as tx_full")
        XCTAssertEqual(snapshot.drops.count, 1, "\(snapshot.drops)")
        XCTAssertEqual(snapshot.txBytes, snapshot.txPackets * 1000)
    }

    // MARK: Write paths

    /// The io_uring path over several rings' worth of frames (batchCapacity 16,
    /// 100 frames: seven submissions), with a refused header, a frame of too
    /// many segments and, once the link is down, EIO for each frame.
    func testTheIOUringPathDeliversEveryFrameByteExactAndCountsErrorsLikeWritev() throws {
        let port = try makePort("u", batchCapacity: 16)
        XCTAssertEqual(port.writePath, .ioUring, "io_uring is enabled on the test machines")
        let socket = try PacketSocket(interface: port.device.index, ignoreOutgoing: true)
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 128, segmentsPerFrame: 66)
        var expected: [[UInt8]] = []
        for i in 0..<100 {
            let frame = udpFrame(sourcePort: UInt16(2000 + i), size: 60 + (i * 37) % 1400)
            if i == 40 {
                arena.append(frame, cuts: Array(1...TapPort.maxSegments), to: batch)
            } else {
                arena.append(frame, cuts: [1 + i % 50], to: batch)
            }
            if i == 70 { batch.header(batch.count - 1).storeBytes(of: 0x55, toByteOffset: 1, as: UInt8.self) }
            if i != 40 && i != 70 { expected.append(frame) }
        }
        let before = try statistic(port, "rx_packets")

        port.push(queue: 0, from: batch)

        let snapshot = port.counters[0].snapshot
        XCTAssertEqual(snapshot.txPackets, 98)
        XCTAssertEqual(snapshot.txBytes, UInt64(expected.reduce(0) { $0 + $1.count }))
        XCTAssertEqual(snapshot.drops, [.tooManySegments: 1, .ioError: 1])
        XCTAssertEqual(port.lastError, EINVAL)
        for (i, frame) in expected.enumerated() {
            let received = try XCTUnwrap(try socket.receive(timeout: 2), "frame \(i) never reached the kernel")
            XCTAssertEqual(received, frame, "frame \(i)")
        }
        XCTAssertNil(try socket.receive(timeout: 0.05), "no frame beyond the batch")
        XCTAssertEqual(try statistic(port, "rx_packets") - before, 98)

        try NetworkSandbox.ip("link", "set", port.device.name, "down")
        batch.reset()
        for _ in 0..<20 { arena.append(expected[0], cuts: [], to: batch) }
        port.push(queue: 0, from: batch)
        XCTAssertEqual(port.counters[0].snapshot.txPackets, 98)
        XCTAssertEqual(port.counters[0].snapshot.drops, [.tooManySegments: 1, .ioError: 21])
        XCTAssertEqual(port.lastError, EIO)
        XCTAssertEqual(port.writePath, .ioUring, "a frame's error is not the ring's")
    }

    /// A burst of one frame skips the ring (a `writev` costs less than an
    /// `io_uring_enter` for one entry): delivered byte-exact, its error counted
    /// as the ring's would be, and the port still writes bursts through the ring.
    func testALoneFrameOnAnIOUringPortIsWrittenAndCountedLikeABurst() throws {
        let port = try makePort("1", batchCapacity: 16)
        XCTAssertEqual(port.writePath, .ioUring, "io_uring is enabled on the test machines")
        let socket = try PacketSocket(interface: port.device.index, ignoreOutgoing: true)
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 4)
        let frame = udpFrame(sourcePort: 4000, size: 98)
        arena.append(frame, cuts: [14], to: batch)

        port.push(queue: 0, from: batch)

        XCTAssertEqual(port.counters[0].snapshot.txPackets, 1)
        XCTAssertEqual(port.counters[0].snapshot.txBytes, UInt64(frame.count))
        XCTAssertEqual(try socket.receive(timeout: 2), frame)

        try NetworkSandbox.ip("link", "set", port.device.name, "down")
        port.push(queue: 0, from: batch)
        XCTAssertEqual(port.counters[0].snapshot.txPackets, 1)
        XCTAssertEqual(port.counters[0].snapshot.drops, [.ioError: 1])
        XCTAssertEqual(port.lastError, EIO)
        XCTAssertEqual(port.writePath, .ioUring)
    }

    func testTheWritevPathWhenAskedForDeliversByteExact() throws {
        let name = NetworkSandbox.interfaceName("ferrytp", "w")
        NetworkSandbox.removeInterface(name)
        addTeardownBlock { NetworkSandbox.removeInterface(name) }
        let port = try TapPort(name: name, queues: 1, mtu: nil, batchCapacity: 8, writePath: .writev)
        addTeardownBlock { port.device.close() }
        try NetworkSandbox.disableIPv6(name)
        XCTAssertEqual(port.writePath, .writev)
        let socket = try PacketSocket(interface: port.device.index, ignoreOutgoing: true)
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 16)
        let frames = (0..<12).map { i in udpFrame(sourcePort: 3000 + UInt16(i), size: 64 + i * 50) }
        for (i, frame) in frames.enumerated() { arena.append(frame, cuts: [1 + i * 3], to: batch) }

        port.push(queue: 0, from: batch)

        XCTAssertEqual(port.counters[0].snapshot.txPackets, 12)
        XCTAssertEqual(port.counters[0].snapshot.drops, [:])
        for (i, frame) in frames.enumerated() {
            XCTAssertEqual(try socket.receive(timeout: 2), frame, "frame \(i)")
        }
        XCTAssertNil(try socket.receive(timeout: 0.05))
    }

    /// A write of up to `stagedFrameLimit` bytes (header and frame) is copied
    /// whole and goes as one buffer, a longer one from its iovecs: bursts mixing
    /// both, on either write path, arrive byte-exact and in order, and so does
    /// each frame pushed on its own.
    func testStagedAndLongerFramesArriveByteExactInOrderOnBothWritePaths() throws {
        let limit = TapPort.stagedFrameLimit - PacketBatch.headerSize
        let sizes = [64, limit, limit + 1, 100, 9014, 1514, 3000, 60, limit - 1, 9000]
        for (suffix, path) in [("m", TapPort.WritePath.ioUring), ("n", .writev)] {
            let port = try makePort(suffix, mtu: 9000, batchCapacity: 16, writePath: path)
            XCTAssertEqual(port.writePath, path, "io_uring is enabled on the test machines")
            let socket = try PacketSocket(interface: port.device.index, ignoreOutgoing: true)
            let arena = FrameArena()
            let batch = PacketBatch(capacity: 16)
            let frames = sizes.enumerated().map { i, size in udpFrame(sourcePort: 5000 + UInt16(i), size: size) }
            for (i, frame) in frames.enumerated() { arena.append(frame, cuts: [1 + i * 5], to: batch) }

            port.push(queue: 0, from: batch)

            XCTAssertEqual(port.counters[0].snapshot.txPackets, UInt64(frames.count), "\(path)")
            XCTAssertEqual(port.counters[0].snapshot.txBytes, UInt64(frames.reduce(0) { $0 + $1.count }), "\(path)")
            XCTAssertEqual(port.counters[0].snapshot.drops, [:], "\(path)")
            for (i, frame) in frames.enumerated() {
                XCTAssertEqual(try socket.receive(timeout: 2), frame, "\(path): frame \(i) (\(frame.count) bytes)")
            }
            for frame in [frames[2], frames[1], frames[4]] {
                batch.reset()
                arena.append(frame, cuts: [30], to: batch)
                port.push(queue: 0, from: batch)
                XCTAssertEqual(try socket.receive(timeout: 2), frame, "\(path): a lone frame of \(frame.count) bytes")
            }
            XCTAssertEqual(port.counters[0].snapshot.txPackets, UInt64(frames.count + 3), "\(path)")
            XCTAssertNil(try socket.receive(timeout: 0.05), "\(path): no frame beyond those pushed")
        }
    }

    // MARK: Pull

    func testFramesTheKernelSendsComeOutOfPullByteExact() throws {
        let port = try makePort("r", mtu: 9000)
        let socket = try PacketSocket(interface: port.device.index)
        // From the shortest Ethernet frame to the longest a 9000-byte MTU allows.
        let frames = [14, 60, 1514, 9014].enumerated().map { i, size in udpFrame(sourcePort: 2000 + UInt16(i), size: size) }
        for frame in frames { try socket.send(frame) }

        let batch = PacketBatch(capacity: 16)
        for slot in 0..<batch.capacity { batch.header(slot).initializeMemory(as: UInt8.self, repeating: 0xAA, count: 12) }
        let pulled = try pullAll(port, queue: 0, into: batch, expecting: frames.count)
        XCTAssertEqual(pulled, frames.count)
        XCTAssertEqual(batch.count, frames.count)
        for (i, frame) in frames.enumerated() {
            XCTAssertEqual(batch.segmentCount(of: i), 1)
            XCTAssertEqual(batch.length(of: i), frame.count)
            XCTAssertEqual(bytes(of: batch, frame: i), frame, "frame \(i)")
            // No offloads: at most DATA_VALID in flags, no GSO, no partial checksum,
            // num_buffers zero (recent kernels write it, older ones leave it to pull).
            let header = [UInt8](UnsafeRawBufferPointer(start: batch.header(i), count: 12))
            XCTAssertEqual(header[0] & ~0x02, 0, "flags \(header)")
            XCTAssertEqual(Array(header[1...]), [UInt8](repeating: 0, count: 11), "header \(header)")
        }
        let snapshot = port.counters[0].snapshot
        XCTAssertEqual(snapshot.rxPackets, UInt64(frames.count))
        XCTAssertEqual(snapshot.rxBytes, UInt64(frames.reduce(0) { $0 + $1.count }))
        XCTAssertEqual(snapshot.drops, [:])
        port.release(queue: 0)
    }

    func testAPullTakesNoMoreThanTheBatchRoomOrTheReceiveBuffers() throws {
        let port = try makePort("b", batchCapacity: 3)
        let socket = try PacketSocket(interface: port.device.index)
        let frames = (0..<7).map { udpFrame(sourcePort: 3000 + UInt16($0), size: 100) }
        for frame in frames { try socket.send(frame) }
        try waitReadable(port.descriptor(queue: 0), timeout: 2)

        let batch = PacketBatch(capacity: 8)
        var got: [[UInt8]] = []
        batch.limit = 2
        XCTAssertEqual(port.pull(queue: 0, into: batch), 2, "the batch's limit")
        got += (0..<batch.count).map { bytes(of: batch, frame: $0) }
        batch.reset()
        XCTAssertEqual(port.pull(queue: 0, into: batch), 3, "the port's receive buffers")
        got += (0..<batch.count).map { bytes(of: batch, frame: $0) }
        batch.reset()
        XCTAssertEqual(port.pull(queue: 0, into: batch), 2)
        got += (0..<batch.count).map { bytes(of: batch, frame: $0) }
        batch.reset()
        XCTAssertEqual(port.pull(queue: 0, into: batch), 0, "the queue is empty")
        XCTAssertEqual(got, frames)
        XCTAssertEqual(port.counters[0].snapshot.rxPackets, 7)
    }

    /// tun cuts a frame longer than the reader's buffers to fit and reports
    /// only the bytes it copied, so a full buffer is all a reader sees of it.
    func testAFrameThatFillsTheReceiveBufferIsDroppedAsTooLarge() throws {
        let port = try makePort("l")
        try port.device.setMTU(9500)
        let socket = try PacketSocket(interface: port.device.index)
        let largest = udpFrame(sourcePort: 1, size: TapPort.bufferSize - 1)
        let exact = udpFrame(sourcePort: 2, size: TapPort.bufferSize)
        let longer = udpFrame(sourcePort: 3, size: TapPort.bufferSize + 84)
        let small = udpFrame(sourcePort: 4, size: 64)
        for frame in [largest, exact, longer, small] { try socket.send(frame) }

        let batch = PacketBatch(capacity: 8)
        XCTAssertEqual(try pullAll(port, queue: 0, into: batch, expecting: 4), 4)
        XCTAssertEqual(batch.count, 2)
        XCTAssertEqual(bytes(of: batch, frame: 0), largest)
        XCTAssertEqual(bytes(of: batch, frame: 1), small, "the frame after the cut ones is whole")
        let snapshot = port.counters[0].snapshot
        XCTAssertEqual(snapshot.drops, [.rxBufferTooSmall: 2])
        XCTAssertEqual(snapshot.rxPackets, 2)
        XCTAssertEqual(snapshot.rxBytes, UInt64(largest.count + small.count))
    }

    /// Flows spread over the queues by the kernel's flow hash: with 64 flows,
    /// all on one of two queues would be a 1-in-2^63 chance.
    func testMultiQueueTapsPullEveryFrameFromOneQueueOrTheOther() throws {
        let port = try makePort("m", queues: 2)
        XCTAssertEqual(port.queueCount, 2)
        XCTAssertEqual(port.counters.count, 2)
        XCTAssertNotEqual(port.descriptor(queue: 0), port.descriptor(queue: 1))
        for q in 0..<2 {
            var pfd = pollfd(fd: port.descriptor(queue: q), events: Int16(POLLIN), revents: 0)
            XCTAssertEqual(poll(&pfd, 1, 0), 0, "queue \(q): nothing to read, no error")
            XCTAssertEqual(pfd.revents, 0)
        }
        try assertTwoQueuesCarryFlowsBothWays(
            peer: try PacketSocket(interface: port.device.index, ignoreOutgoing: true), timeout: 2,
            descriptor: port.descriptor(queue:), pull: { port.pull(queue: $0, into: $1) },
            release: port.release(queue:), push: { port.push(queue: $0, from: $1) }, counters: port.counters)
    }

    // MARK: Offloads

    /// A packet socket with a virtio-net header sends a UDP frame whose
    /// checksum is left to the device (NEEDS_CSUM, like a guest's). With
    /// checksum offload on, the TAP hands it on partial; with it off, the
    /// kernel completes the checksum first.
    func testChecksumOffloadDecidesWhetherTheKernelFinishesChecksums() throws {
        let port = try makePort("c")
        let socket = try PacketSocket(interface: port.device.index, vnetHeader: true)
        let frame = udpFrame(sourcePort: 4242, size: 120, partialChecksum: true)
        // virtio_net_hdr: NEEDS_CSUM, no GSO, csum_start 34 (after Ethernet and
        // IPv4), csum_offset 6 (the UDP checksum field); little-endian.
        let partial: [UInt8] = [1, 0, 0, 0, 0, 0, 34, 0, 6, 0]
        let batch = PacketBatch(capacity: 4)

        try port.setOffloads([.checksum])
        XCTAssertEqual(port.device.offloads, [.checksum])
        try socket.send(partial + frame)
        XCTAssertEqual(try pullAll(port, queue: 0, into: batch, expecting: 1), 1)
        XCTAssertEqual(Array(UnsafeRawBufferPointer(start: batch.header(0), count: 12)),
                       [1, 0, 0, 0, 0, 0, 34, 0, 6, 0, 0, 0], "NEEDS_CSUM, start 34, offset 6")
        XCTAssertEqual(bytes(of: batch, frame: 0), frame, "the checksum field as sent: the partial sum")

        // A frame queued before the offload goes off keeps its partial checksum.
        try socket.send(partial + frame)
        try waitReadable(port.descriptor(queue: 0), timeout: 2)
        try port.setOffloads([])
        XCTAssertEqual(port.device.offloads, [])
        batch.reset()
        XCTAssertEqual(try pullAll(port, queue: 0, into: batch, expecting: 1), 1)
        XCTAssertEqual(batch.header(0).load(as: UInt8.self) & 1, 1)

        try socket.send(partial + frame)
        batch.reset()
        XCTAssertEqual(try pullAll(port, queue: 0, into: batch, expecting: 1), 1)
        XCTAssertEqual(batch.header(0).load(as: UInt8.self) & 1, 0, "no NEEDS_CSUM without the offload")
        let finished = bytes(of: batch, frame: 0)
        XCTAssertEqual(Array(finished[..<40]), Array(frame[..<40]))
        XCTAssertEqual(Array(finished[42...]), Array(frame[42...]))
        XCTAssertNotEqual(Array(finished[40..<42]), Array(frame[40..<42]))
        XCTAssertEqual(udpChecksum(of: finished), 0, "the kernel filled in a correct UDP checksum")
    }

    func testAnMTUTheReceiveBuffersCannotHoldIsRefusedBeforeTheTapIsCreated() {
        let name = NetworkSandbox.interfaceName("ferrytp", "u")
        NetworkSandbox.removeInterface(name)
        XCTAssertThrowsError(try TapPort(name: name, queues: 1, mtu: 9001)) { error in
            guard let error = error as? InvalidArgument else { return XCTFail("\(error)") }
            XCTAssertTrue(error.description.contains("MTU 9001"), error.description)
        }
        XCTAssertEqual(if_nametoindex(name), 0)
    }

    // MARK: Helpers

    /// A TAP port on a TAP of the test's own, without IPv6 so the kernel sends
    /// nothing on it by itself; removed when the test ends, however it ends.
    private func makePort(_ suffix: String, queues: Int = 1, mtu: Int? = nil, batchCapacity: Int = 256,
                          writePath: TapPort.WritePath = .ioUring) throws -> TapPort {
        let name = NetworkSandbox.interfaceName("ferrytp", suffix)
        NetworkSandbox.removeInterface(name)
        addTeardownBlock { NetworkSandbox.removeInterface(name) }
        let port = try TapPort(name: name, queues: queues, mtu: mtu, batchCapacity: batchCapacity, writePath: writePath)
        addTeardownBlock { port.device.close() }
        XCTAssertEqual(port.device.name, name)
        try NetworkSandbox.disableIPv6(name)
        try NetworkSandbox.drain(port.device)
        return port
    }

    /// Pulls into `batch` until `expecting` reads took a frame or 2 s passed.
    private func pullAll(_ port: TapPort, queue: Int, into batch: PacketBatch, expecting: Int) throws -> Int {
        var pulled = 0
        let deadline = Date().addingTimeInterval(2)
        while pulled < expecting, Date() < deadline {
            try waitReadable(port.descriptor(queue: queue), timeout: deadline.timeIntervalSinceNow)
            pulled += port.pull(queue: queue, into: batch)
        }
        return pulled
    }

    private func statistic(_ port: TapPort, _ counter: String) throws -> UInt64 {
        let text = try NetworkSandbox.sysfs(port.device.name, "statistics/\(counter)")
        return try XCTUnwrap(UInt64(text), "\(counter): \(text)")
    }
}
