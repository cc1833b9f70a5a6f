import Platform
import XCTest

@testable import VhostUser

final class MessageCodecTests: XCTestCase {
    struct Sample {
        var request: VhostUserRequest
        var payload: VhostUserMessage.Payload
        var fdCount: Int
    }

    static let regionA = MemoryRegionInfo(guestPhysAddr: 0, size: 0x8000_0000, userAddr: 0x7f00_0000_0000, mmapOffset: 0)
    static let regionB = MemoryRegionInfo(guestPhysAddr: 0x1_0000_0000, size: 0x4000_0000, userAddr: 0x7f80_0000_0000,
                                          mmapOffset: 0x8000_0000)

    /// A typical payload for every supported request, with the descriptors it needs.
    static func supportedSamples() -> [Sample] {
        RequestPolicy.supportedRequests.map { request in
            switch request {
            case .getFeatures, .setOwner, .resetOwner, .getProtocolFeatures, .getQueueNum, .getMaxMemSlots, .getStatus:
                Sample(request: request, payload: .none, fdCount: 0)
            case .setFeatures:
                Sample(request: request, payload: .u64(1 << 32 | VhostUserFeatures.protocolFeatures | 1 << 15), fdCount: 0)
            case .setProtocolFeatures:
                Sample(request: request, payload: .u64(VhostUserProtocolFeatures([.mq, .replyAck, .status]).rawValue), fdCount: 0)
            case .setMemTable:
                Sample(request: request, payload: .memoryTable([regionA, regionB]), fdCount: 2)
            case .setVringNum:
                Sample(request: request, payload: .vringState(index: 1, num: 256), fdCount: 0)
            case .setVringAddr:
                Sample(request: request, payload: .vringAddress(VringAddress(
                    index: 1, flags: 1, descUserAddr: 0x7f00_0001_0000, usedUserAddr: 0x7f00_0001_2000,
                    availUserAddr: 0x7f00_0001_1000, logGuestAddr: 0x2000)), fdCount: 0)
            case .setVringBase:
                Sample(request: request, payload: .vringState(index: 0, num: 0xffff), fdCount: 0)
            case .getVringBase:
                Sample(request: request, payload: .vringState(index: 1, num: 0), fdCount: 0)
            case .setVringKick:
                Sample(request: request, payload: .vringFile(index: 0, hasFD: true), fdCount: 1)
            case .setVringCall:
                Sample(request: request, payload: .vringFile(index: 255, hasFD: true), fdCount: 1)
            case .setVringErr:
                Sample(request: request, payload: .vringFile(index: 3, hasFD: false), fdCount: 0)
            case .setVringEnable:
                Sample(request: request, payload: .vringState(index: 1, num: 1), fdCount: 0)
            case .sendRARP:
                Sample(request: request, payload: .u64(0x0000_5634_1200_5452), fdCount: 0)
            case .netSetMTU:
                Sample(request: request, payload: .u64(9000), fdCount: 0)
            case .setLogBase:
                Sample(request: request, payload: .dirtyLog(size: 0x4000, offset: 0x100), fdCount: 1)
            case .addMemReg:
                Sample(request: request, payload: .memoryRegion(regionB), fdCount: 1)
            case .remMemReg:
                Sample(request: request, payload: .memoryRegion(regionB), fdCount: 0)
            case .setStatus:
                Sample(request: request, payload: .u64(0xf), fdCount: 0)
            default:
                Sample(request: request, payload: .u64(0xdead), fdCount: 99)  // caught by the round-trip test
            }
        }
    }

    /// Feeds `bytes` with `fdCount` fresh eventfds and returns every outcome.
    func decode(_ bytes: [UInt8], fdCount: Int = 0, role: MessageDecoder.Role = .backEnd) throws -> [Outcome] {
        var decoder = MessageDecoder(role: role)
        decoder.feed(bytes, descriptors: ReceivedDescriptors(owning: try makeEventFDs(fdCount)))
        var outcomes: [Outcome] = []
        while let result = decoder.next() { outcomes.append(Outcome(result)) }
        return outcomes
    }

    /// The one error `bytes` decode to.
    func decodeError(_ bytes: [UInt8], fdCount: Int = 0, role: MessageDecoder.Role = .backEnd,
                     file: StaticString = #filePath, line: UInt = #line) throws -> VhostUserProtocolError?
    {
        let outcomes = try decode(bytes, fdCount: fdCount, role: role)
        guard outcomes.count == 1, case .error(let error) = outcomes[0] else {
            XCTFail("expected one error, got \(outcomes)", file: file, line: line)
            return nil
        }
        return error
    }

    func assertReason(_ bytes: [UInt8], fdCount: Int = 0, _ reason: VhostUserProtocolError.Reason, fatal: Bool = false,
                      role: MessageDecoder.Role = .backEnd, file: StaticString = #filePath, line: UInt = #line) throws
    {
        guard let error = try decodeError(bytes, fdCount: fdCount, role: role, file: file, line: line) else { return }
        XCTAssertEqual(error.reason, reason, file: file, line: line)
        XCTAssertEqual(error.isFatal, fatal, "fatality of \(error)", file: file, line: line)
    }

    // MARK: - Constants

    func testRequestNumbersFollowTheSpec() {
        XCTAssertEqual(VhostUserRequest.allCases.map(\.rawValue), Array(1...40))
        XCTAssertEqual(VhostUserRequest.getFeatures.rawValue, 1)
        XCTAssertEqual(VhostUserRequest.setMemTable.rawValue, 5)
        XCTAssertEqual(VhostUserRequest.getVringBase.rawValue, 11)
        XCTAssertEqual(VhostUserRequest.setVringErr.rawValue, 14)
        XCTAssertEqual(VhostUserRequest.setVringEnable.rawValue, 18)
        XCTAssertEqual(VhostUserRequest.netSetMTU.rawValue, 20)
        XCTAssertEqual(VhostUserRequest.getMaxMemSlots.rawValue, 36)
        XCTAssertEqual(VhostUserRequest.remMemReg.rawValue, 38)
        XCTAssertEqual(VhostUserRequest.getStatus.rawValue, 40)
        XCTAssertEqual(VhostUserRequest.describe(11), "VHOST_USER_GET_VRING_BASE (11)")
        XCTAssertEqual(VhostUserRequest.describe(77), "request 77")
    }

    func testProtocolFeatureBitsAndHeaderFlags() {
        XCTAssertEqual(VhostUserProtocolFeatures.mq.rawValue, 1 << 0)
        XCTAssertEqual(VhostUserProtocolFeatures.logShmfd.rawValue, 1 << 1)
        XCTAssertEqual(VhostUserProtocolFeatures.rarp.rawValue, 1 << 2)
        XCTAssertEqual(VhostUserProtocolFeatures.replyAck.rawValue, 1 << 3)
        XCTAssertEqual(VhostUserProtocolFeatures.mtu.rawValue, 1 << 4)
        XCTAssertEqual(VhostUserProtocolFeatures.backendReq.rawValue, 1 << 5)
        XCTAssertEqual(VhostUserProtocolFeatures.config.rawValue, 1 << 9)
        XCTAssertEqual(VhostUserProtocolFeatures.inflightShmfd.rawValue, 1 << 12)
        XCTAssertEqual(VhostUserProtocolFeatures.resetDevice.rawValue, 1 << 13)
        XCTAssertEqual(VhostUserProtocolFeatures.configureMemSlots.rawValue, 1 << 15)
        XCTAssertEqual(VhostUserProtocolFeatures.status.rawValue, 1 << 16)
        XCTAssertEqual(VhostUserFeatures.protocolFeatures, 0x4000_0000)
        XCTAssertEqual(VhostUserHeader.version, 1)
        XCTAssertEqual(VhostUserHeader.replyFlag, 4)
        XCTAssertEqual(VhostUserHeader.needReplyFlag, 8)
    }

    func testPolicyTable() {
        XCTAssertEqual(RequestPolicy.supportedRequests, [
            .getFeatures, .setFeatures, .setOwner, .resetOwner, .setMemTable, .setLogBase, .setVringNum, .setVringAddr,
            .setVringBase, .getVringBase, .setVringKick, .setVringCall, .setVringErr, .getProtocolFeatures,
            .setProtocolFeatures, .getQueueNum, .setVringEnable, .sendRARP, .netSetMTU, .getMaxMemSlots,
            .addMemReg, .remMemReg, .setStatus, .getStatus,
        ])
        XCTAssertEqual(RequestPolicy.of(.getVringBase)?.reply, .vringState)
        XCTAssertEqual(RequestPolicy.of(.getFeatures)?.reply, .u64)
        XCTAssertEqual(RequestPolicy.of(.setFeatures)?.reply, RequestPolicy.ReplyLayout.none)
        XCTAssertEqual(RequestPolicy.of(.setMemTable)?.descriptors, .onePerRegion)
        XCTAssertEqual(RequestPolicy.of(.setVringCall)?.descriptors, .oneUnlessNoFDFlag)
        XCTAssertEqual(RequestPolicy.of(.setMemTable)?.payload.maximumSize, 8 + 8 * 32)
        XCTAssertEqual(RequestPolicy.of(.addMemReg)?.payload.fixedSize, 40)
        XCTAssertEqual(RequestPolicy.of(.setVringAddr)?.payload.fixedSize, 40)
        XCTAssertEqual(RequestPolicy.of(.setLogBase)?.reply, .empty)
        XCTAssertEqual(RequestPolicy.of(.setLogBase)?.descriptors, .exactlyOne)
        XCTAssertEqual(RequestPolicy.of(.setLogBase)?.payload.fixedSize, 16)
        XCTAssertNil(RequestPolicy.of(.setLogFD))
        XCTAssertNil(RequestPolicy.of(.resetDevice))
    }

    // MARK: - Round trips

    func testEverySupportedRequestRoundTrips() throws {
        let samples = Self.supportedSamples()
        XCTAssertEqual(samples.count, RequestPolicy.supportedRequests.count)
        for sample in samples {
            for needReply in [false, true] {
                let bytes = MessageEncoder.request(sample.request, payload: sample.payload, needReply: needReply)
                let fds = try makeEventFDs(sample.fdCount)
                var decoder = MessageDecoder()
                decoder.feed(bytes, descriptors: ReceivedDescriptors(owning: fds))
                guard case .success(let message)? = decoder.next() else {
                    XCTFail("\(sample.request.specName) did not decode")
                    continue
                }
                XCTAssertEqual(message.request, sample.request)
                XCTAssertEqual(message.payload, sample.payload, sample.request.specName)
                XCTAssertEqual(message.needsReply, needReply)
                XCTAssertEqual(message.flags, needReply ? 9 : 1)
                XCTAssertEqual(message.descriptors.count, sample.fdCount)
                for (i, fd) in fds.enumerated() { XCTAssertEqual(message.descriptors.take(i)?.rawValue, fd, "fds keep their order") }
                XCTAssertNil(decoder.next())
            }
        }
    }

    func testWireLayoutIsLittleEndianAndMatchesTheSpec() {
        XCTAssertEqual(MessageEncoder.request(.setVringNum, payload: .vringState(index: 2, num: 0x100), needReply: true), [
            8, 0, 0, 0, 9, 0, 0, 0, 8, 0, 0, 0,
            2, 0, 0, 0, 0, 1, 0, 0,
        ])
        XCTAssertEqual(MessageEncoder.request(.setVringKick, payload: .vringFile(index: 3, hasFD: false)), [
            12, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0,
            3, 1, 0, 0, 0, 0, 0, 0,
        ])
        let table = MessageEncoder.request(.setMemTable, payload: .memoryTable([Self.regionA]))
        XCTAssertEqual(table.count, 12 + 8 + 32)
        XCTAssertEqual(Array(table[8..<12]), [40, 0, 0, 0])
        XCTAssertEqual(Array(table[12..<20]), [1, 0, 0, 0, 0, 0, 0, 0], "count, then u32 padding")
        XCTAssertEqual(Array(table[28..<36]), [0, 0, 0, 0x80, 0, 0, 0, 0], "the size of region 0")
        let add = MessageEncoder.request(.addMemReg, payload: .memoryRegion(Self.regionB))
        XCTAssertEqual(add.count, 12 + 40)
        XCTAssertEqual(Array(add[12..<20]), [0, 0, 0, 0, 0, 0, 0, 0], "u64 padding before the region")
        XCTAssertEqual(Array(add[20..<28]), [0, 0, 0, 0, 1, 0, 0, 0], "then the guest address")
        XCTAssertEqual(MessageEncoder.request(.setVringAddr, payload: .vringAddress(VringAddress(
            index: 0, flags: 0, descUserAddr: 1, usedUserAddr: 2, availUserAddr: 3, logGuestAddr: 4))).count, 12 + 40)
    }

    func testRepliesEncodeAndDecode() throws {
        let features = MessageEncoder.reply(to: .getFeatures, payload: .u64(VhostUserFeatures.protocolFeatures | 1 << 32))
        XCTAssertEqual(Array(features[0..<12]), [1, 0, 0, 0, 5, 0, 0, 0, 8, 0, 0, 0])
        XCTAssertEqual(try decode(features, role: .frontEnd),
                       [.message(.getFeatures, flags: 5, .u64(VhostUserFeatures.protocolFeatures | 1 << 32), fds: 0)])

        let base = MessageEncoder.reply(to: .getVringBase, payload: .vringState(index: 1, num: 4242))
        XCTAssertEqual(try decode(base, role: .frontEnd), [.message(.getVringBase, flags: 5, .vringState(index: 1, num: 4242), fds: 0)])

        let ok = MessageEncoder.ack(to: VhostUserRequest.setMemTable.rawValue, status: 0)
        XCTAssertEqual(ok, [5, 0, 0, 0, 5, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(try decode(ok, role: .frontEnd), [.message(.setMemTable, flags: 5, .u64(0), fds: 0)])
        let failed = MessageEncoder.ack(to: VhostUserRequest.netSetMTU.rawValue, status: 1)
        XCTAssertEqual(try decode(failed, role: .frontEnd), [.message(.netSetMTU, flags: 5, .u64(1), fds: 0)])

        // Direction is checked both ways.
        try assertReason(MessageEncoder.request(.getFeatures), .notAReply, role: .frontEnd)
        try assertReason(features, .reservedFlagBits(5))
        try assertReason(MessageEncoder.frame(requestNumber: 1, flags: 5 | 8, payload: [0, 0, 0, 0, 0, 0, 0, 0]),
                         .reservedFlagBits(13), role: .frontEnd)
        try assertReason(MessageEncoder.reply(to: .getFeatures, payload: .none), .payloadSizeMismatch(expected: 8, got: 0),
                         role: .frontEnd)
        try assertReason(MessageEncoder.reply(to: .getFeatures, payload: .u64(1)), fdCount: 1,
                         .descriptorCountMismatch(expected: 0...0, got: 1), role: .frontEnd)
    }

    func testMessagesTheDeviceJudges() throws {
        // The codec does not know how many queues the device has.
        XCTAssertEqual(try decode(MessageEncoder.request(.setVringNum, payload: .vringState(index: 1000, num: 0))),
                       [.message(.setVringNum, flags: 1, .vringState(index: 1000, num: 0), fds: 0)])
        // An empty table is well-formed; whether it is acceptable is the device's call.
        XCTAssertEqual(try decode(MessageEncoder.request(.setMemTable, payload: .memoryTable([]))),
                       [.message(.setMemTable, flags: 1, .memoryTable([]), fds: 0)])
        // The largest table, and regions that end exactly at the top of the address space minus one.
        let top = MemoryRegionInfo(guestPhysAddr: .max - 0x1000, size: 0x1000, userAddr: .max - 0x1000, mmapOffset: .max - 0x1000)
        let eight = Array(repeating: top, count: 8)
        XCTAssertEqual(try decode(MessageEncoder.request(.setMemTable, payload: .memoryTable(eight)), fdCount: 8),
                       [.message(.setMemTable, flags: 1, .memoryTable(eight), fds: 8)])
        // REM_MEM_REG tolerates the stray descriptor older front-ends send.
        XCTAssertEqual(try decode(MessageEncoder.request(.remMemReg, payload: .memoryRegion(Self.regionA)), fdCount: 1),
                       [.message(.remMemReg, flags: 1, .memoryRegion(Self.regionA), fds: 1)])
        // The padding words are not checked: senders have left them uninitialised.
        var padded = MessageEncoder.request(.setMemTable, payload: .memoryTable([Self.regionA]))
        padded[16] = 0xAA
        XCTAssertEqual(try decode(padded, fdCount: 1), [.message(.setMemTable, flags: 1, .memoryTable([Self.regionA]), fds: 1)])
    }

    // MARK: - Errors

    func testBadVersionIsFatal() throws {
        for flags: UInt32 in [0, 2, 3, 0x4, 0xffff_fff0] {
            try assertReason(MessageEncoder.frame(requestNumber: 1, flags: flags, payload: []), .badVersion(flags & 3), fatal: true)
        }
        // Nothing after a fatal error is decoded, even a good message in the same chunk.
        let outcomes = try decode(MessageEncoder.frame(requestNumber: 1, flags: 0, payload: []) + MessageEncoder.request(.getFeatures))
        XCTAssertEqual(outcomes.count, 1)
    }

    func testPayloadSizeIsCapped() throws {
        let big = MessageEncoder.frame(requestNumber: 5, flags: 1, payload: [UInt8](repeating: 0, count: 4097))
        try assertReason(big, .payloadTooLarge(size: 4097), fatal: true)
        // Fatal as soon as the header is in: the decoder does not wait for the payload.
        var decoder = MessageDecoder()
        decoder.feed(MessageEncoder.frame(requestNumber: 5, flags: 1, payload: []).prefix(8) + [0xff, 0xff, 0xff, 0xff])
        guard case .failure(let error)? = decoder.next() else { return XCTFail("expected an error") }
        XCTAssertEqual(error.reason, .payloadTooLarge(size: .max))
        // 4096 bytes are framed and skipped: the next message still decodes.
        let outcomes = try decode(MessageEncoder.frame(requestNumber: 25, flags: 1, payload: [UInt8](repeating: 1, count: 4096))
            + MessageEncoder.request(.getStatus))
        XCTAssertEqual(outcomes.count, 2)
        XCTAssertEqual(outcomes.last, .message(.getStatus, flags: 1, .none, fds: 0))
    }

    func testUnsupportedRequestsAreSkipped() throws {
        for number: UInt32 in [0, 7, 21, 22, 24, 34, 35, 41, 0xffff_ffff] {
            let outcomes = try decode(MessageEncoder.frame(requestNumber: number, flags: 1 | 8, payload: [1, 2, 3])
                + MessageEncoder.request(.getQueueNum))
            XCTAssertEqual(outcomes.count, 2)
            guard case .error(let error) = outcomes[0] else { XCTFail("\(number) accepted"); continue }
            XCTAssertEqual(error.reason, .unsupportedRequest)
            XCTAssertEqual(error.requestNumber, number)
            XCTAssertFalse(error.isFatal)
            XCTAssertTrue(error.needsReply, "the device can still refuse it with a REPLY_ACK")
            XCTAssertEqual(outcomes[1], .message(.getQueueNum, flags: 1, .none, fds: 0))
        }
    }

    func testReservedFlagBits() throws {
        try assertReason(MessageEncoder.frame(requestNumber: 3, flags: 1 | 1 << 4, payload: []), .reservedFlagBits(0x11))
        try assertReason(MessageEncoder.frame(requestNumber: 3, flags: 1 | 1 << 31, payload: []), .reservedFlagBits(0x8000_0001))
        try assertReason(MessageEncoder.frame(requestNumber: 3, flags: 1 | 4, payload: []), .reservedFlagBits(5))
    }

    func testPayloadSizeMismatches() throws {
        try assertReason(MessageEncoder.request(.getFeatures, payload: .u64(0)), .payloadSizeMismatch(expected: 0, got: 8))
        try assertReason(MessageEncoder.frame(requestNumber: 2, flags: 1, payload: [1, 2, 3, 4]), .payloadSizeMismatch(expected: 8, got: 4))
        try assertReason(MessageEncoder.frame(requestNumber: 8, flags: 1, payload: [UInt8](repeating: 0, count: 12)),
                         .payloadSizeMismatch(expected: 8, got: 12))
        try assertReason(MessageEncoder.frame(requestNumber: 9, flags: 1, payload: [UInt8](repeating: 0, count: 32)),
                         .payloadSizeMismatch(expected: 40, got: 32))
        try assertReason(MessageEncoder.frame(requestNumber: 37, flags: 1, payload: [UInt8](repeating: 1, count: 32)), fdCount: 1,
                         .payloadSizeMismatch(expected: 40, got: 32))
        try assertReason(MessageEncoder.frame(requestNumber: 12, flags: 1, payload: []), .payloadSizeMismatch(expected: 8, got: 0))
        // A table too short to hold its count.
        try assertReason(MessageEncoder.frame(requestNumber: 5, flags: 1, payload: [1, 0, 0, 0]), .payloadSizeMismatch(expected: 8, got: 4))
        // A count that disagrees with the size, either way.
        var table = MessageEncoder.encode(.memoryTable([Self.regionA, Self.regionB]))
        table[0] = 1
        try assertReason(MessageEncoder.frame(requestNumber: 5, flags: 1, payload: table), fdCount: 1,
                         .payloadSizeMismatch(expected: 40, got: 72))
        table[0] = 3
        try assertReason(MessageEncoder.frame(requestNumber: 5, flags: 1, payload: table), fdCount: 3,
                         .payloadSizeMismatch(expected: 104, got: 72))
    }

    func testTooManyRegions() throws {
        let nine = Array(repeating: Self.regionA, count: 9)
        try assertReason(MessageEncoder.request(.setMemTable, payload: .memoryTable(nine)), fdCount: 9, .tooManyRegions(count: 9))
        try assertReason(MessageEncoder.frame(requestNumber: 5, flags: 1, payload: [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]),
                         .tooManyRegions(count: .max))
    }

    func testInvalidRegions() throws {
        let good = Self.regionA
        var zero = good
        zero.size = 0
        var guest = good
        guest.guestPhysAddr = .max - 10
        guest.size = 11
        var user = good
        user.userAddr = 1 << 63
        user.size = 1 << 63
        var mmap = good
        mmap.mmapOffset = .max
        for (region, problem) in [(zero, VhostUserProtocolError.RegionProblem.zeroSize), (guest, .guestRangeOverflows),
                                  (user, .userRangeOverflows), (mmap, .mmapRangeOverflows)]
        {
            try assertReason(MessageEncoder.request(.setMemTable, payload: .memoryTable([good, region])), fdCount: 2,
                             .invalidRegion(index: 1, problem))
            try assertReason(MessageEncoder.request(.addMemReg, payload: .memoryRegion(region)), fdCount: 1,
                             .invalidRegion(index: 0, problem))
            try assertReason(MessageEncoder.request(.remMemReg, payload: .memoryRegion(region)), .invalidRegion(index: 0, problem))
        }
    }

    func testDescriptorCountMismatches() throws {
        try assertReason(MessageEncoder.request(.setOwner), fdCount: 1, .descriptorCountMismatch(expected: 0...0, got: 1))
        try assertReason(MessageEncoder.request(.setVringKick, payload: .vringFile(index: 0, hasFD: true)),
                         .descriptorCountMismatch(expected: 1...1, got: 0))
        try assertReason(MessageEncoder.request(.setVringCall, payload: .vringFile(index: 0, hasFD: true)), fdCount: 2,
                         .descriptorCountMismatch(expected: 1...1, got: 2))
        try assertReason(MessageEncoder.request(.setVringErr, payload: .vringFile(index: 0, hasFD: false)), fdCount: 1,
                         .descriptorCountMismatch(expected: 0...0, got: 1))
        try assertReason(MessageEncoder.request(.setMemTable, payload: .memoryTable([Self.regionA, Self.regionB])), fdCount: 1,
                         .descriptorCountMismatch(expected: 2...2, got: 1))
        try assertReason(MessageEncoder.request(.addMemReg, payload: .memoryRegion(Self.regionA)),
                         .descriptorCountMismatch(expected: 1...1, got: 0))
        try assertReason(MessageEncoder.request(.remMemReg, payload: .memoryRegion(Self.regionA)), fdCount: 2,
                         .descriptorCountMismatch(expected: 0...1, got: 2))
    }

    func testReservedBitsInAVringIndex() throws {
        for value: UInt64 in [1 << 9, 0x3ff, 1 << 32, 1 << 63] {
            try assertReason(MessageEncoder.request(.setVringKick, payload: .u64(value)), fdCount: 1, .reservedPayloadBits(value))
        }
    }

    func testTruncatedDescriptors() throws {
        var decoder = MessageDecoder()
        decoder.feed(MessageEncoder.request(.setVringCall, payload: .vringFile(index: 0, hasFD: true)), descriptorsTruncated: true)
        decoder.feed(MessageEncoder.request(.getStatus))
        guard case .failure(let error)? = decoder.next() else { return XCTFail("expected an error") }
        XCTAssertEqual(error.reason, .descriptorsTruncated)
        XCTAssertFalse(error.isFatal)
        guard case .success(let next)? = decoder.next() else { return XCTFail("the stream goes on") }
        XCTAssertEqual(next.request, .getStatus)
    }

    func testDescriptionsNameTheRequestAndTheProblem() {
        func text(_ number: UInt32, _ reason: VhostUserProtocolError.Reason) -> String {
            VhostUserProtocolError(requestNumber: number, flags: 1, reason: reason).description
        }
        XCTAssertEqual(text(1, .badVersion(2)), "VHOST_USER_GET_FEATURES (1): header version 2, expected 1 (connection out of sync)")
        XCTAssertEqual(text(5, .payloadTooLarge(size: 5000)),
                       "VHOST_USER_SET_MEM_TABLE (5): payload size 5000 exceeds the 4096-byte limit (connection out of sync)")
        XCTAssertEqual(text(6, .unsupportedRequest), "VHOST_USER_SET_LOG_BASE (6): not supported")
        XCTAssertEqual(text(99, .unsupportedRequest), "request 99: not supported")
        XCTAssertEqual(text(8, .payloadSizeMismatch(expected: 8, got: 4)), "VHOST_USER_SET_VRING_NUM (8): payload is 4 bytes, expected 8")
        XCTAssertEqual(text(12, .descriptorCountMismatch(expected: 1...1, got: 0)),
                       "VHOST_USER_SET_VRING_KICK (12): carried 0 file descriptors, expected 1")
        XCTAssertEqual(text(38, .descriptorCountMismatch(expected: 0...1, got: 2)),
                       "VHOST_USER_REM_MEM_REG (38): carried 2 file descriptors, expected 0 to 1")
        XCTAssertEqual(text(5, .tooManyRegions(count: 9)), "VHOST_USER_SET_MEM_TABLE (5): 9 memory regions, at most 8")
        XCTAssertEqual(text(37, .invalidRegion(index: 0, .zeroSize)), "VHOST_USER_ADD_MEM_REG (37): memory region 0 is invalid: its size is 0")
        XCTAssertTrue(text(5, .invalidRegion(index: 3, .userRangeOverflows)).contains("region 3 is invalid: user address + size overflows"))
        XCTAssertTrue(text(13, .reservedPayloadBits(0x200)).contains("VHOST_USER_SET_VRING_CALL (13): vring index payload 0x200"))
        XCTAssertTrue(text(3, .reservedFlagBits(0x11)).contains("flags 0x11"))
        XCTAssertTrue(text(12, .descriptorsTruncated).contains("MSG_CTRUNC"))
        XCTAssertTrue(text(1, .notAReply).contains("reply bit"))
    }

    func testOnlyFramingErrorsAreFatal() {
        let reasons: [VhostUserProtocolError.Reason] = [
            .badVersion(0), .payloadTooLarge(size: 5000), .unsupportedRequest, .reservedFlagBits(0x11), .notAReply,
            .payloadSizeMismatch(expected: 8, got: 0), .descriptorCountMismatch(expected: 1...1, got: 0),
            .tooManyRegions(count: 9), .invalidRegion(index: 0, .zeroSize), .reservedPayloadBits(1 << 9), .descriptorsTruncated,
        ]
        let fatal = reasons.filter { VhostUserProtocolError(requestNumber: 1, flags: 1, reason: $0).isFatal }
        XCTAssertEqual(fatal, [.badVersion(0), .payloadTooLarge(size: 5000)])
    }
}
