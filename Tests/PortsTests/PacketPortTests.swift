import Foundation
import Glibc
import Model
import Packets
import Platform
@testable import Ports
import TestSupport
import XCTest

/// Packet ports on real veth pairs: the port on one end, a packet socket on
/// the peer (in a namespace of its own) for the wire's far side. These tests
/// need root and fail with the reason without it. Every pair and namespace a
/// test creates is removed again, also when the test fails.
final class PacketPortTests: XCTestCase {
    override func setUpWithError() throws {
        try NetworkSandbox.requireTapSupport()
    }

    // MARK: Push

    func testPushedFramesArriveOnThePeerByteExact() throws {
        let veth = try VethPair("p")
        let port = try PacketPort(interface: veth.name)
        let peer = try veth.peerSocket()
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 16)
        var frames = [60, 64, 100, 128, 256, 512, 1024, 1514].enumerated().map { i, size in
            udpFrame(sourcePort: 1000 + UInt16(i), size: size)
        }
        frames.append(tagged(udpFrame(sourcePort: 9, size: 1514), vlan: 10))
        for (i, frame) in frames.enumerated() { arena.append(frame, cuts: [1 + i * 7], to: batch) }

        port.push(queue: 0, from: batch)

        let snapshot = port.counters[0].snapshot
        XCTAssertEqual(snapshot.txPackets, UInt64(frames.count))
        XCTAssertEqual(snapshot.txBytes, UInt64(frames.reduce(0) { $0 + $1.count }))
        XCTAssertEqual(snapshot.drops, [:])
        for (i, frame) in frames.enumerated() {
            let received = try XCTUnwrap(try peer.receive(timeout: 2), "frame \(i) never reached the peer")
            // The peer's kernel takes the tag off too; its packet socket (no
            // ring, no auxdata) hands the frame over untagged.
            XCTAssertEqual(received, i == 8 ? udpFrame(sourcePort: 9, size: 1514) : frame, "frame \(i)")
        }
        XCTAssertNil(try peer.receive(timeout: 0.05), "no frame beyond the batch")
        XCTAssertEqual(port.lastError, 0)
    }

    /// A ring of 32 slots and a burst of 40: once the ring is full, the 32 go
    /// to the kernel and the port looks again, taking the slots veth's driver
    /// has freed meanwhile (in practice all of them: it frees each as it
    /// forwards it); a frame that still finds the ring full is `tx_full`. The
    /// next burst finds the slots free again, and the peer gets every frame sent.
    func testAFullTransmitRingIsHandedOverAndCountsWhatStillFindsItFull() throws {
        let veth = try VethPair("f")
        let port = try PacketPort(interface: veth.name,
                                  transmitRing: PacketRingSocket.TransmitRing(slotSize: 2048, slotCount: 32))
        let peer = try veth.peerSocket()
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 64)
        for i in 0..<40 { arena.append(udpFrame(sourcePort: UInt16(i), size: 200), cuts: [], to: batch) }

        port.push(queue: 0, from: batch)
        let first = port.counters[0].snapshot
        XCTAssertGreaterThan(first.txPackets, 32, "the full ring was not handed over before the burst ended")
        XCTAssertEqual(first.txPackets + (first.drops[.txFull] ?? 0), 40)
        XCTAssertEqual(Set(first.drops.keys).subtracting([.txFull]), [])
        port.push(queue: 0, from: batch)
        let second = port.counters[0].snapshot
        XCTAssertGreaterThanOrEqual(second.txPackets, first.txPackets + 32)
        XCTAssertEqual(second.txPackets + (second.drops[.txFull] ?? 0), 80)
        var received = 0
        while try peer.receive(timeout: 0.5) != nil { received += 1 }
        XCTAssertEqual(received, Int(second.txPackets))
    }

    /// Guests leave checksums to the device (NEEDS_CSUM); with `offloads=off`
    /// the kernel is asked for nothing, so the port finishes them in the slot.
    /// A request outside the frame is dropped.
    func testWithOffloadsOffPartialChecksumsAreFinishedBeforeTheWire() throws {
        let veth = try VethPair("c")
        let port = try PacketPort(interface: veth.name, offloads: .off)
        XCTAssertEqual(port.offloadAcceptance, .partialChecksum)
        let peer = try veth.peerSocket()
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 8)
        let udp = udpFrame(sourcePort: 4242, size: 333, partialChecksum: true)
        let tcp = tcpFrame(size: 1001, partialChecksum: true)
        arena.append(udp, cuts: [20, 40], to: batch)
        batch.header(0).copyMemory(from: [1, 0, 0, 0, 0, 0, 34, 0, 6, 0, 0, 0] as [UInt8], byteCount: 12)
        arena.append(tcp, cuts: [35], to: batch)
        batch.header(1).copyMemory(from: [1, 0, 0, 0, 0, 0, 34, 0, 16, 0, 0, 0] as [UInt8], byteCount: 12)
        arena.append(udp, cuts: [], to: batch)
        batch.header(2).copyMemory(from: [1, 0, 0, 0, 0, 0, 0x4c, 0x01, 6, 0, 0, 0] as [UInt8], byteCount: 12)

        port.push(queue: 0, from: batch)

        XCTAssertEqual(port.counters[0].snapshot.txPackets, 2)
        XCTAssertEqual(port.counters[0].snapshot.drops, [.badChecksumOffset: 1])
        let sentUDP = try XCTUnwrap(try peer.receive(timeout: 2))
        XCTAssertEqual(udpChecksum(of: sentUDP), 0, "a correct UDP checksum")
        XCTAssertEqual(Array(sentUDP[..<40]), Array(udp[..<40]))
        XCTAssertEqual(Array(sentUDP[42...]), Array(udp[42...]))
        let sentTCP = try XCTUnwrap(try peer.receive(timeout: 2))
        XCTAssertEqual(sentTCP, tcpFrame(size: 1001), "the TCP checksum as a full computation gives it")
        XCTAssertNil(try peer.receive(timeout: 0.05))
    }

    /// With `offloads=off` a GSO frame is cut straight into transmit slots,
    /// every checksum computed; with `csum` the kernel is left the checksums
    /// (NEEDS_CSUM in each segment's header). The wire gets the segmenter's
    /// own segments (`segmentWithFerry`), in order with the frames around them.
    func testSuperFramesAreSegmentedStraightIntoTransmitSlots() throws {
        for (level, checksum) in [(PortSpec.Offloads.off, SoftwareSegmenter.Checksum.complete), (.csum, .partial)] {
            let veth = try VethPair(level == .off ? "so" : "sc")
            let port = try PacketPort(interface: veth.name, offloads: level)
            let peer = try veth.namespace.enter {
                try PacketSocket(interface: if_nametoindex(veth.peer), vnetHeader: true, ignoreOutgoing: true)
            }
            let arena = FrameArena()
            let batch = PacketBatch(capacity: 8)
            let plain = udpFrame(sourcePort: 3, size: 300)
            let gso = GSOTestFrame(ipv6: true, payloadLength: 9000, segmentSize: 1440, tcpFlags: 0x19)
            arena.append(plain, cuts: [], to: batch)
            arena.append(gso.bytes, cuts: [20, 4001], to: batch)
            gso.header.store(to: batch.header(1))
            arena.append(plain, cuts: [], to: batch)

            port.push(queue: 0, from: batch, segmenter: SoftwareSegmenter())

            let segments = try segmentWithFerry(gso, checksum: checksum).1.map(\.1)
            let expected = [plain] + segments + [plain]
            for (i, frame) in expected.enumerated() {
                let received = try XCTUnwrap(try peer.receive(timeout: 2), "\(level): frame \(i) never arrived")
                XCTAssertEqual(Array(received[10...]), frame, "\(level): frame \(i)")
                let flags = received[0] & VirtioNetHeader.needsChecksum
                let isSegment = i > 0 && i < expected.count - 1
                XCTAssertEqual(flags, isSegment && level == .csum ? VirtioNetHeader.needsChecksum : 0, "\(level) \(i)")
                XCTAssertEqual(received[1], VirtioNetHeader.gsoNone, "no GSO left for the kernel")
            }
            XCTAssertNil(try peer.receive(timeout: 0.05))
            let snapshot = port.counters[0].snapshot
            XCTAssertEqual(snapshot.txPackets, UInt64(expected.count), "\(level)")
            XCTAssertEqual(snapshot.offloads[.segmentedFrames], 1)
            XCTAssertEqual(snapshot.offloads[.segmentsOut], UInt64(segments.count))
            XCTAssertEqual(snapshot.drops, [:])
        }
    }

    /// A ring of 32 slots and six 7-segment frames: once the ring is full, what
    /// it holds goes to the kernel and the port looks again, so the ring takes
    /// at least 32 of the 42 (more as the driver frees slots meanwhile), and
    /// every other segment is counted `tx_full`, to the segment.
    func testAFullTransmitRingCountsEverySegmentLeftOver() throws {
        let veth = try VethPair("sf")
        let port = try PacketPort(interface: veth.name,
                                  transmitRing: PacketRingSocket.TransmitRing(slotSize: 2048, slotCount: 32),
                                  offloads: .off)
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 8)
        let gso = GSOTestFrame(payloadLength: 10_000, segmentSize: 1448)
        for i in 0..<6 {
            arena.append(gso.bytes, cuts: [], to: batch)
            gso.header.store(to: batch.header(i))
        }

        port.push(queue: 0, from: batch, segmenter: SoftwareSegmenter())

        let snapshot = port.counters[0].snapshot
        XCTAssertGreaterThanOrEqual(snapshot.txPackets, 32)
        XCTAssertEqual(snapshot.offloads[.segmentsOut], snapshot.txPackets)
        XCTAssertEqual(snapshot.offloads[.segmentedFrames], 6)
        XCTAssertEqual(snapshot.txPackets + (snapshot.drops[.txFull] ?? 0), 42)
        XCTAssertEqual(Set(snapshot.drops.keys).subtracting([.txFull]), [])
    }

    /// With offloads on (the default), a partial checksum and a GSO super-frame
    /// go to the kernel as they are, with their virtio-net header
    /// (PACKET_VNET_HDR): the peer's socket, which reads headers too, gets
    /// the same header and bytes. A checksum request outside the frame is
    /// dropped here, before the kernel would skip it unseen; an ordinary frame
    /// still keeps to the MTU (the kernel no longer checks with the header on).
    func testPartialChecksumsAndSuperFramesGoToTheKernelWithTheirHeader() throws {
        let veth = try VethPair("v")
        let port = try PacketPort(interface: veth.name)
        XCTAssertEqual(port.offloadAcceptance, .everything)
        XCTAssertEqual(port.transmitRing, .superFrames)
        let peer = try veth.namespace.enter { try PacketSocket(interface: if_nametoindex(veth.peer), vnetHeader: true,
                                                               ignoreOutgoing: true) }
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 8)
        let udp = udpFrame(sourcePort: 4242, size: 333, partialChecksum: true)
        let partial = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, checksumStart: 34, checksumOffset: 6)
        let gso = GSOTestFrame(payloadLength: 60_000, segmentSize: 1448)
        let tooLong = udpFrame(sourcePort: 5, size: 1515)
        for (frame, header) in [(udp, partial), (gso.bytes, gso.header),
                                (udp, VirtioNetHeader(flags: 1, checksumStart: 330, checksumOffset: 6)),
                                (tooLong, VirtioNetHeader())] {
            arena.append(frame, cuts: [frame.count / 3], to: batch)
            header.store(to: batch.header(batch.count - 1))
            // DATA_VALID is the receiver's business: it does not go to the kernel.
            batch.header(batch.count - 1).storeBytes(of: header.flags | VirtioNetHeader.dataValid, as: UInt8.self)
        }

        port.push(queue: 0, from: batch)

        let snapshot = port.counters[0].snapshot
        XCTAssertEqual(snapshot.txPackets, 2)
        XCTAssertEqual(snapshot.txBytes, UInt64(udp.count + gso.bytes.count))
        XCTAssertEqual(snapshot.drops, [.badChecksumOffset: 1, .tooLong: 1])
        for (frame, header) in [(udp, partial), (gso.bytes, gso.header)] {
            let received = try XCTUnwrap(try peer.receive(timeout: 2, capacity: 70_000))
            XCTAssertEqual(Array(received[10...]), frame, "the frame as it was, checksum field included")
            let got = received.withUnsafeBytes { VirtioNetHeader(loading: $0.baseAddress!) }
            XCTAssertEqual(got.flags & VirtioNetHeader.needsChecksum, VirtioNetHeader.needsChecksum)
            XCTAssertEqual(got.gsoType, header.gsoType)
            XCTAssertEqual(got.checksumStart, header.checksumStart)
            XCTAssertEqual(got.checksumOffset, header.checksumOffset)
            if header.gsoType != VirtioNetHeader.gsoNone { XCTAssertEqual(got.segmentSize, header.segmentSize) }
        }
        XCTAssertNil(try peer.receive(timeout: 0.05))
        XCTAssertEqual(port.lastError, 0)
    }

    /// The kernel hands over what the host's own stack sent as it was sent: a
    /// partial checksum with NEEDS_CSUM and its offsets, a super-frame with its
    /// gso_type and gso_size. A tagged frame gets its tag back and its offsets
    /// moved with it (the kernel counts them from the frame it untagged).
    func testPartialChecksumsAndSuperFramesFromTheWireKeepTheirHeader() throws {
        let veth = try VethPair("w")
        let port = try PacketPort(interface: veth.name)
        let peer = try veth.namespace.enter { try PacketSocket(interface: if_nametoindex(veth.peer), vnetHeader: true,
                                                               ignoreOutgoing: true) }
        let udp = udpFrame(sourcePort: 77, size: 400, partialChecksum: true)
        let partial = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, checksumStart: 34, checksumOffset: 6)
        let taggedUDP = tagged(udp, vlan: 9)
        let taggedPartial = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, checksumStart: 38, checksumOffset: 6)
        let gso = GSOTestFrame(payloadLength: 30_000, segmentSize: 1000)
        let sent = [(udp, partial), (taggedUDP, taggedPartial), (gso.bytes, gso.header)]
        for (frame, header) in sent {
            var wire = [UInt8](repeating: 0, count: 10)
            wire.withUnsafeMutableBytes { header.store(to: $0.baseAddress!) }
            try peer.send(wire + frame)
        }
        let batch = PacketBatch(capacity: 8)
        var pulled: [([UInt8], VirtioNetHeader)] = []
        let deadline = Date().addingTimeInterval(3)
        while pulled.count < sent.count, Date() < deadline {
            try waitReadable(port.descriptor(queue: 0), timeout: 0.1)
            batch.reset()
            _ = port.pull(queue: 0, into: batch)
            for i in 0..<batch.count {
                XCTAssertEqual(batch.header(i).load(fromByteOffset: 10, as: UInt16.self), 0, "num_buffers")
                pulled.append((bytes(of: batch, frame: i), VirtioNetHeader(loading: batch.header(i))))
            }
            port.release(queue: 0)
        }
        XCTAssertEqual(pulled.map(\.0), sent.map(\.0))
        for ((_, got), (_, header)) in zip(pulled, sent) {
            XCTAssertEqual(got.flags & VirtioNetHeader.needsChecksum, VirtioNetHeader.needsChecksum)
            XCTAssertEqual(got.checksumStart, header.checksumStart)
            XCTAssertEqual(got.checksumOffset, header.checksumOffset)
            XCTAssertEqual(got.gsoType, header.gsoType)
            if header.gsoType != VirtioNetHeader.gsoNone { XCTAssertEqual(got.segmentSize, header.segmentSize) }
        }
        XCTAssertEqual(port.counters[0].snapshot.drops, [:])
    }

    /// A checksum request the kernel's header puts outside the frame is
    /// dropped as a guest's would be, and only NEEDS_CSUM and DATA_VALID of
    /// its flags go on.
    func testAKernelHeaderIsCheckedLikeAGuests() throws {
        let frame = udpFrame(sourcePort: 1, size: 100)
        let header = UnsafeMutableRawPointer.allocate(byteCount: 12, alignment: 8)
        let given = UnsafeMutableRawPointer.allocate(byteCount: 10, alignment: 8)
        defer { header.deallocate(); given.deallocate() }
        VirtioNetHeader(flags: 0xFF, checksumStart: 90, checksumOffset: 8).store(to: given)
        XCTAssertTrue(PacketRingSocket.copyChecked(given, to: header, frameLength: frame.count))
        XCTAssertEqual(header.load(as: UInt8.self), VirtioNetHeader.needsChecksum | VirtioNetHeader.dataValid)
        VirtioNetHeader(flags: 1, checksumStart: 90, checksumOffset: 9).store(to: given)
        XCTAssertFalse(PacketRingSocket.copyChecked(given, to: header, frameLength: frame.count))
        VirtioNetHeader(flags: 1, checksumStart: 0xFFFF, checksumOffset: 0xFFFF).store(to: given)
        XCTAssertFalse(PacketRingSocket.copyChecked(given, to: header, frameLength: frame.count))
        VirtioNetHeader(flags: 2, checksumStart: 0xFFFF, checksumOffset: 0xFFFF).store(to: given)
        XCTAssertTrue(PacketRingSocket.copyChecked(given, to: header, frameLength: frame.count), "no checksum asked")
    }

    func testFramesLongerThanTheMTUAreCountedTooLong() throws {
        let veth = try VethPair("l")
        let port = try PacketPort(interface: veth.name)
        XCTAssertEqual(port.maxFrameLength, 1514)
        let peer = try veth.peerSocket()
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 8)
        let longest = udpFrame(sourcePort: 1, size: 1514)
        let longestTagged = tagged(udpFrame(sourcePort: 2, size: 1514), vlan: 7)
        arena.append(longest, cuts: [], to: batch)
        arena.append(udpFrame(sourcePort: 3, size: 1515), cuts: [], to: batch)
        arena.append(longestTagged, cuts: [], to: batch)
        arena.append(tagged(udpFrame(sourcePort: 4, size: 1515), vlan: 7), cuts: [], to: batch)
        arena.append(udpFrame(sourcePort: 5, size: 3000), cuts: [100], to: batch)

        port.push(queue: 0, from: batch)

        XCTAssertEqual(port.counters[0].snapshot.txPackets, 2)
        XCTAssertEqual(port.counters[0].snapshot.drops, [.tooLong: 3])
        XCTAssertEqual(try peer.receive(timeout: 2), longest)
        XCTAssertEqual(try peer.receive(timeout: 2), udpFrame(sourcePort: 2, size: 1514), "the tagged one, untagged by the peer")
        XCTAssertNil(try peer.receive(timeout: 0.05))

        try NetworkSandbox.ip("link", "set", veth.name, "mtu", "1000")
        port.refreshMTU()
        XCTAssertEqual(port.maxFrameLength, 1014)
    }

    // MARK: Pull

    /// Three bursts of 100 frames through a ring of four 64 KiB blocks (about
    /// 60 such frames each): only blocks given back by `release` make room.
    /// Headers come zeroed; a tagged frame comes with its tag.
    func testFramesFromThePeerArePulledByteExactAndReleaseGivesBlocksBack() throws {
        let veth = try VethPair("r")
        let ring = PacketRingSocket.ReceiveRing(blockSize: 64 << 10, blockCount: 4, frameSizeLimit: 16 << 10,
                                                retireTimeoutMilliseconds: 1)
        let port = try PacketPort(interface: veth.name, receiveRing: ring)
        let peer = try veth.peerSocket()
        let batch = PacketBatch(capacity: 64)
        var total = 0
        for round in 0..<3 {
            var frames = (0..<99).map { udpFrame(sourcePort: UInt16(round * 100 + $0), size: 60 + ($0 * 97) % 1000) }
            frames.append(tagged(udpFrame(sourcePort: 7, size: 200), vlan: 42))
            for frame in frames { try peer.send(frame) }
            var pulled: [[UInt8]] = []
            let deadline = Date().addingTimeInterval(3)
            while pulled.count < frames.count, Date() < deadline {
                try waitReadable(port.descriptor(queue: 0), timeout: 0.1)
                batch.reset()
                for slot in 0..<batch.capacity { batch.header(slot).initializeMemory(as: UInt8.self, repeating: 0xAA, count: 12) }
                let taken = port.pull(queue: 0, into: batch)
                XCTAssertEqual(taken, batch.count)
                for i in 0..<batch.count {
                    pulled.append(bytes(of: batch, frame: i))
                    XCTAssertEqual(Array(UnsafeRawBufferPointer(start: batch.header(i), count: 12)), [UInt8](repeating: 0, count: 12))
                    XCTAssertEqual(batch.segmentCount(of: i), 1)
                }
                port.release(queue: 0)
            }
            XCTAssertEqual(pulled, frames, "round \(round)")
            total += frames.count
            XCTAssertEqual(port.sockets[0].receiveRingBlocksHeld, 0, "every block given back")
        }
        let snapshot = port.counters[0].snapshot
        XCTAssertEqual(snapshot.rxPackets, UInt64(total))
        XCTAssertEqual(snapshot.drops, [:])
    }

    /// Frames the port sends do not come back to it (PACKET_IGNORE_OUTGOING).
    func testThePortDoesNotReceiveWhatItSends() throws {
        let veth = try VethPair("o")
        let port = try PacketPort(interface: veth.name)
        let arena = FrameArena()
        let batch = PacketBatch(capacity: 4)
        arena.append(udpFrame(sourcePort: 1, size: 100), cuts: [], to: batch)
        port.push(queue: 0, from: batch)
        XCTAssertEqual(port.counters[0].snapshot.txPackets, 1)
        usleep(20_000)
        batch.reset()
        XCTAssertEqual(port.pull(queue: 0, into: batch), 0)
    }

    /// Flows spread over two sockets by hash: with 64 flows, all on one queue
    /// would be a 1-in-2^63 chance. Each frame arrives exactly once.
    func testFanoutSpreadsFlowsOverQueuesAndEachFrameArrivesOnce() throws {
        let veth = try VethPair("m")
        let port = try PacketPort(interface: veth.name, queues: 2)
        XCTAssertEqual(port.queueCount, 2)
        XCTAssertNotNil(port.sockets[0].fanoutGroup)
        XCTAssertEqual(port.sockets[0].fanoutGroup, port.sockets[1].fanoutGroup)
        XCTAssertNotEqual(port.descriptor(queue: 0), port.descriptor(queue: 1))
        try assertTwoQueuesCarryFlowsBothWays(
            peer: try veth.peerSocket(), timeout: 3, descriptor: port.descriptor(queue:),
            pull: { port.pull(queue: $0, into: $1) }, release: port.release(queue:),
            push: { port.push(queue: $0, from: $1) }, counters: port.counters,
            afterPull: { batch in
                usleep(20_000)
                for q in 0..<2 {
                    batch.reset()
                    XCTAssertEqual(port.pull(queue: q, into: batch), 0, "queue \(q): no duplicate")
                }
            })
    }

    // MARK: The interface

    func testTheInterfaceIsPromiscuousWhileThePortIsOpen() throws {
        let veth = try VethPair("x")
        let iffPromisc = 0x100
        XCTAssertEqual(try flags(veth.name) & iffPromisc, 0)
        var port: PacketPort? = try PacketPort(interface: veth.name, queues: 2)
        XCTAssertNotEqual(try flags(veth.name) & iffPromisc, 0)
        // `ip link` shows PROMISC only for promiscuity set by hand (gflags);
        // a packet socket's membership is counted in the details.
        XCTAssertTrue(try NetworkSandbox.ip("-d", "link", "show", veth.name).contains("promiscuity 2"), "one per socket")
        XCTAssertEqual(port?.queueCount, 2)
        port = nil
        XCTAssertEqual(try flags(veth.name) & iffPromisc, 0, "the kernel dropped our promiscuity with the sockets")
        XCTAssertTrue(try NetworkSandbox.ip("-d", "link", "show", veth.name).contains("promiscuity 0"))
    }

    /// The interface goes away under the port: transmits fail (counted, the
    /// error kept), the socket's error shows in poll until taken, nothing crashes.
    func testAnInterfaceThatDisappearsCountsErrorsAndCrashesNothing() throws {
        let veth = try VethPair("g")
        let port = try PacketPort(interface: veth.name)
        veth.remove()
        XCTAssertEqual(if_nametoindex(veth.name), 0)

        var pfd = pollfd(fd: port.descriptor(queue: 0), events: Int16(POLLIN), revents: 0)
        XCTAssertEqual(poll(&pfd, 1, 1000), 1)
        XCTAssertNotEqual(pfd.revents & Int16(POLLERR), 0, "the socket reports the interface's end")
        port.takeSocketError(queue: 0)
        XCTAssertEqual(port.lastError, ENETDOWN)
        XCTAssertEqual(port.counters[0].snapshot.drops, [.ioError: 1])
        pfd.revents = 0
        XCTAssertEqual(poll(&pfd, 1, 0), 0, "taken: poll sleeps again")

        let arena = FrameArena()
        let batch = PacketBatch(capacity: 8)
        for i in 0..<5 { arena.append(udpFrame(sourcePort: UInt16(i), size: 100), cuts: [], to: batch) }
        port.push(queue: 0, from: batch)
        port.push(queue: 0, from: batch)
        let snapshot = port.counters[0].snapshot
        XCTAssertEqual(snapshot.txPackets, 0)
        XCTAssertEqual(snapshot.drops, [.ioError: 11], "every frame of both bursts, the slots freed in between")
        XCTAssertEqual(port.lastError, ENXIO)
        batch.reset()
        XCTAssertEqual(port.pull(queue: 0, into: batch), 0)
        port.refreshMTU()
        XCTAssertEqual(port.maxFrameLength, 1514, "the last MTU known")
    }

    func testAnUnknownInterfaceIsRefusedByName() {
        let name = NetworkSandbox.interfaceName("ferrypk", "none")
        NetworkSandbox.removeInterface(name)
        XCTAssertThrowsError(try PacketPort(interface: name)) { error in
            guard let error = error as? SystemError else { return XCTFail("\(error)") }
            XCTAssertEqual(error.errno, ENODEV)
            XCTAssertTrue(error.description.contains("no such interface '\(name)'"), error.description)
        }
    }

    /// The receive-only socket the AF_XDP port uses for what its XDP program
    /// passes to the kernel: group addresses and frames for other hosts, not
    /// frames for this host.
    func testTheGroupOrOtherHostFilterKeepsGroupAndOtherHostFramesOnly() throws {
        let veth = try VethPair("b")
        let socket = try PacketRingSocket(interface: veth.name,
                                          options: PacketRingSocket.Options(filter: .groupOrOtherHost))
        let peer = try veth.peerSocket()
        var forHost = udpFrame(sourcePort: 1, size: 100)
        forHost.replaceSubrange(0..<6, with: try veth.address)
        var broadcast = udpFrame(sourcePort: 2, size: 100)
        broadcast.replaceSubrange(0..<6, with: [UInt8](repeating: 0xff, count: 6))
        var multicast = udpFrame(sourcePort: 3, size: 100)
        multicast.replaceSubrange(0..<6, with: [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01])
        let otherHost = udpFrame(sourcePort: 4, size: 100)
        for frame in [forHost, broadcast, multicast, otherHost] { try peer.send(frame) }

        var received: [[UInt8]] = []
        let deadline = Date().addingTimeInterval(2)
        while received.count < 3, Date() < deadline {
            var pfd = pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, 100)
            while let frame = socket.nextReceivedFrame() {
                received.append(Array(UnsafeRawBufferPointer(start: frame.data, count: frame.length)))
            }
            socket.returnConsumedBlocks()
        }
        usleep(20_000)
        while let frame = socket.nextReceivedFrame() {
            received.append(Array(UnsafeRawBufferPointer(start: frame.data, count: frame.length)))
        }
        XCTAssertEqual(received, [broadcast, multicast, otherHost])
    }

    // MARK: Helpers

    private func flags(_ name: String) throws -> Int {
        let text = try NetworkSandbox.sysfs(name, "flags")
        return try XCTUnwrap(Int(text.dropFirst(2), radix: 16), text)
    }
}
