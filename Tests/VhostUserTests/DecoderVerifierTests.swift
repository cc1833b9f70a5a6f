import Glibc
import Platform
import XCTest

@testable import VhostUser

// MARK: - Test helpers shared by the codec tests

/// One message as a sender would write it: its bytes, how many descriptors ride with it, and
/// whether the receiving kernel reports them truncated.
struct WireMessage {
    var bytes: [UInt8]
    var fdCount = 0
    var truncated = false
}

/// What the decoder produced, in a form that compares across runs (descriptors by count).
enum Outcome: Equatable, CustomStringConvertible {
    case message(VhostUserRequest, flags: UInt32, VhostUserMessage.Payload, fds: Int)
    case error(VhostUserProtocolError)

    init(_ result: Result<VhostUserMessage, VhostUserProtocolError>) {
        switch result {
        case .success(let m): self = .message(m.request, flags: m.flags, m.payload, fds: m.descriptors.count)
        case .failure(let e): self = .error(e)
        }
    }

    var description: String {
        switch self {
        case .message(let r, let flags, let payload, let fds): "message(\(r.specName), flags \(flags), \(payload), fds \(fds))"
        case .error(let e): "error(\(e))"
        }
    }
}

/// A fixed-seed generator (SplitMix64), so every run tests the same inputs.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Fresh eventfds, owned by the caller (usually handed to a decoder at once).
func makeEventFDs(_ count: Int) throws -> [Int32] {
    try (0..<count).map { _ in try EventFD.create().release() }
}

/// True when `fd` is not an open descriptor of this process.
func isClosed(_ fd: Int32) -> Bool {
    fcntl(fd, F_GETFD) == -1 && errno == EBADF
}

/// Feeds `messages` as a stream cut at `cuts` (offsets into the concatenation) and drains the
/// decoder after every chunk. Descriptors (fresh eventfds) ride as the kernel delivers them: with
/// the chunk holding the first byte of their message, a chunk that may begin with earlier bytes
/// but ends inside or at the end of that message (recvmsg stops after descriptor-carrying data).
func decodeStream(_ messages: [WireMessage], cuts: [Int], role: MessageDecoder.Role = .backEnd,
                  file: StaticString = #filePath, line: UInt = #line) throws -> [Outcome]
{
    var stream: [UInt8] = []
    var carriers: [(start: Int, message: WireMessage)] = []
    var forced: Set<Int> = [0]
    for message in messages {
        if message.fdCount > 0 || message.truncated {
            carriers.append((stream.count, message))
            forced.insert(stream.count + message.bytes.count)
        }
        stream += message.bytes
    }
    let boundaries = Set(cuts.filter { $0 > 0 && $0 < stream.count }).union(forced.filter { $0 < stream.count }).sorted()
    var decoder = MessageDecoder(role: role)
    var outcomes: [Outcome] = []
    for (i, start) in boundaries.enumerated() {
        let end = i + 1 < boundaries.count ? boundaries[i + 1] : stream.count
        let carrier = carriers.first { $0.start >= start && $0.start < end }?.message
        let fds = ReceivedDescriptors(owning: try makeEventFDs(carrier?.fdCount ?? 0))
        stream[start..<end].withUnsafeBytes {
            decoder.feed($0, descriptors: fds, descriptorsTruncated: carrier?.truncated ?? false)
        }
        while let result = decoder.next() { outcomes.append(Outcome(result)) }
        XCTAssertLessThan(decoder.bufferedByteCount, VhostUserHeader.size + VhostUserHeader.maxPayloadSize,
                          "a drained decoder holds less than one message", file: file, line: line)
    }
    return outcomes
}

// MARK: - Verifier

/// Decodes the same stream fed whole, per message, byte by byte and in random chunks,
/// and checks every way gives the same outcomes.
final class DecoderVerifierTests: XCTestCase {
    /// A stream with every supported request, fds, recoverable errors of each kind, and replies
    /// to keep going after them.
    static func mixedStream() -> [WireMessage] {
        var messages = MessageCodecTests.supportedSamples().map {
            WireMessage(bytes: MessageEncoder.request($0.request, payload: $0.payload, needReply: $0.request.rawValue % 2 == 0),
                        fdCount: $0.fdCount)
        }
        // Recoverable errors sit between good messages; each must consume exactly its own bytes.
        let bad: [WireMessage] = [
            WireMessage(bytes: MessageEncoder.frame(requestNumber: 7, flags: 1, payload: [UInt8](repeating: 7, count: 16)), fdCount: 1),
            WireMessage(bytes: MessageEncoder.frame(requestNumber: 999, flags: 1, payload: [])),
            WireMessage(bytes: MessageEncoder.request(.getFeatures, payload: .u64(1))),
            WireMessage(bytes: MessageEncoder.request(.setVringKick, payload: .vringFile(index: 0, hasFD: true))),
            WireMessage(bytes: MessageEncoder.request(.setVringCall, payload: .u64(0x300)), fdCount: 1),
            WireMessage(bytes: MessageEncoder.request(.setMemTable, payload: .memoryTable([
                MemoryRegionInfo(guestPhysAddr: 0, size: 0, userAddr: 0, mmapOffset: 0),
            ])), fdCount: 1),
            WireMessage(bytes: MessageEncoder.request(.setVringNum, payload: .vringState(index: 0, num: 256)), truncated: true),
            WireMessage(bytes: MessageEncoder.frame(requestNumber: 8, flags: 1 | 1 << 4, payload: [0, 0, 0, 0, 0, 1, 0, 0])),
        ]
        for (i, message) in bad.enumerated() { messages.insert(message, at: min(messages.count, 2 + i * 3)) }
        return messages
    }

    func verify(_ messages: [WireMessage], role: MessageDecoder.Role = .backEnd, randomRuns: Int = 50,
                file: StaticString = #filePath, line: UInt = #line) throws
    {
        let total = messages.reduce(0) { $0 + $1.bytes.count }
        let reference = try messages.flatMap { try decodeStream([$0], cuts: [], role: role) }
        XCTAssertEqual(reference.count, messages.count, "one outcome per message", file: file, line: line)

        let oneChunk = try decodeStream(messages, cuts: [], role: role)
        XCTAssertEqual(oneChunk, reference, "all messages in one chunk", file: file, line: line)

        let byteByByte = try decodeStream(messages, cuts: Array(0..<total), role: role)
        XCTAssertEqual(byteByByte, reference, "one byte at a time", file: file, line: line)

        var rng = SplitMix64(seed: 0xF0_11E5)
        for run in 0..<randomRuns {
            let cutCount = Int.random(in: 0...max(1, total / 8), using: &rng)
            let cuts = (0..<cutCount).map { _ in Int.random(in: 0..<max(1, total), using: &rng) }
            let chunked = try decodeStream(messages, cuts: cuts, role: role)
            XCTAssertEqual(chunked, reference, "random chunking \(run)", file: file, line: line)
        }
    }

    func testMixedStreamDecodesTheSameHoweverItIsChunked() throws {
        let messages = Self.mixedStream()
        try verify(messages)
        // The stream really holds both kinds, so the comparison above means something.
        let outcomes = try decodeStream(messages, cuts: [])
        let errors = outcomes.filter { if case .error = $0 { true } else { false } }
        XCTAssertEqual(errors.count, 8)
        XCTAssertEqual(outcomes.count - errors.count, RequestPolicy.supportedRequests.count)
        XCTAssertTrue(errors.allSatisfy { if case .error(let e) = $0 { !e.isFatal } else { false } })
    }

    func testEachMessageAloneDecodesByteByByte() throws {
        for message in Self.mixedStream() {
            try verify([message], randomRuns: 5)
        }
    }

    func testNothingIsReturnedBeforeTheLastByte() throws {
        let bytes = MessageEncoder.request(.setVringAddr, payload: .vringAddress(
            VringAddress(index: 1, flags: 0, descUserAddr: 0x1000, usedUserAddr: 0x3000, availUserAddr: 0x2000, logGuestAddr: 0)))
        var decoder = MessageDecoder()
        for (i, byte) in bytes.enumerated() {
            decoder.feed([byte])
            let result = decoder.next()
            if i < bytes.count - 1 {
                XCTAssertNil(result, "byte \(i)")
                XCTAssertEqual(decoder.bufferedByteCount, i + 1)
            } else {
                XCTAssertNotNil(result)
                XCTAssertEqual(decoder.bufferedByteCount, 0)
            }
        }
        XCTAssertNil(decoder.next())
    }

    func testRepliesDecodeTheSameHoweverTheyAreChunked() throws {
        let replies = [
            WireMessage(bytes: MessageEncoder.reply(to: .getFeatures, payload: .u64(1 << 32 | VhostUserFeatures.protocolFeatures))),
            WireMessage(bytes: MessageEncoder.reply(to: .getVringBase, payload: .vringState(index: 1, num: 77))),
            WireMessage(bytes: MessageEncoder.ack(to: VhostUserRequest.setMemTable.rawValue, status: 0)),
            WireMessage(bytes: MessageEncoder.ack(to: VhostUserRequest.netSetMTU.rawValue, status: 1)),
            WireMessage(bytes: MessageEncoder.request(.getFeatures)),  // not a reply
        ]
        try verify(replies, role: .frontEnd)
    }

    func testFatalErrorStopsTheStreamHoweverItIsChunked() throws {
        var messages = Self.mixedStream()
        messages.insert(WireMessage(bytes: MessageEncoder.frame(requestNumber: 1, flags: 2, payload: [])), at: 5)
        let reference = try decodeStream(messages, cuts: [])
        XCTAssertEqual(reference.count, 6, "five messages, then the fatal error, then nothing")
        guard case .error(let error) = reference.last else { return XCTFail("expected an error last") }
        XCTAssertTrue(error.isFatal)
        let byteByByte = try decodeStream(messages, cuts: Array(0..<messages.reduce(0) { $0 + $1.bytes.count }))
        XCTAssertEqual(byteByByte, reference)
    }

    // MARK: - Random garbage

    /// 120,000 seeded inputs: random bytes, plausible headers over random payloads, and valid
    /// messages with bytes flipped. None may crash; each outcome is a message or a typed error,
    /// a decoded message survives re-encoding, and a drained decoder holds less than a message.
    func testRandomGarbageNeverCrashes() {
        var rng = SplitMix64(seed: 0x5EED_0F_F0_22)
        let valid = MessageCodecTests.supportedSamples().map { MessageEncoder.request($0.request, payload: $0.payload) }
        var messages = 0
        var errors: [String: Int] = [:]
        for _ in 0..<120_000 {
            var input: [UInt8]
            switch Int.random(in: 0..<3, using: &rng) {
            case 0:
                input = (0..<Int.random(in: 0...80, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1:
                let size = Int.random(in: 0...300, using: &rng)
                let flags = UInt32.random(in: 0...15, using: &rng) | (Int.random(in: 0..<8, using: &rng) == 0 ? UInt32.random(in: 0...UInt32.max, using: &rng) : 0)
                let payload = (0..<Int.random(in: max(0, size - 4)...size + 4, using: &rng)).map { _ in
                    UInt8.random(in: 0...255, using: &rng)
                }
                input = MessageEncoder.frame(requestNumber: UInt32.random(in: 0...42, using: &rng), flags: flags, payload: [])
                input.replaceSubrange(8..<12, with: withUnsafeBytes(of: UInt32(size).littleEndian, Array.init))
                input += payload
            default:
                input = valid[Int.random(in: 0..<valid.count, using: &rng)]
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    input[Int.random(in: 0..<input.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
                }
            }

            var decoder = MessageDecoder()
            var offset = 0
            while offset < input.count {
                let end = min(input.count, offset + Int.random(in: 1...64, using: &rng))
                input[offset..<end].withUnsafeBytes { decoder.feed($0) }
                offset = end
                while let result = decoder.next() {
                    switch result {
                    case .success(let message):
                        messages += 1
                        // A decoded message re-encodes to bytes that decode to the same message.
                        var again = MessageDecoder()
                        again.feed(MessageEncoder.frame(requestNumber: message.request.rawValue, flags: message.flags,
                                                        payload: MessageEncoder.encode(message.payload)))
                        guard case .success(let copy) = again.next() else { return XCTFail("re-encoding \(message.payload) failed") }
                        XCTAssertEqual(copy.payload, message.payload)
                        XCTAssertEqual(copy.flags, message.flags)
                    case .failure(let error):
                        errors[String(describing: error.reason).prefix { $0 != "(" }.description, default: 0] += 1
                        XCTAssertFalse(error.description.isEmpty)
                    }
                }
                XCTAssertLessThan(decoder.bufferedByteCount, VhostUserHeader.size + VhostUserHeader.maxPayloadSize)
            }
        }
        // The inputs reached deep into the checks, not just the version test.
        XCTAssertGreaterThan(messages, 1_000)
        for kind in ["badVersion", "payloadTooLarge", "unsupportedRequest", "reservedFlagBits", "payloadSizeMismatch",
                     "descriptorCountMismatch", "tooManyRegions", "invalidRegion", "reservedPayloadBits"] {
            XCTAssertGreaterThan(errors[kind, default: 0], 0, "no \(kind) among \(errors)")
        }
    }
}

// MARK: - Descriptor ownership

/// Every descriptor a rejected message carried is closed by the time the error is returned.
final class DecoderDescriptorTests: XCTestCase {
    func assertRejectedAndClosed(_ bytes: [UInt8], fdCount: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let fds = try makeEventFDs(fdCount)
        var decoder = MessageDecoder()
        decoder.feed(bytes, descriptors: ReceivedDescriptors(owning: fds))
        guard case .failure(let error)? = decoder.next() else {
            return XCTFail("expected a rejection", file: file, line: line)
        }
        XCTAssertFalse(error.description.isEmpty)
        for fd in fds { XCTAssertTrue(isClosed(fd), "fd \(fd) still open after \(error)", file: file, line: line) }
    }

    func testDescriptorsOfRejectedMessagesAreClosed() throws {
        // Descriptor count mismatches.
        try assertRejectedAndClosed(MessageEncoder.request(.getFeatures), fdCount: 1)
        try assertRejectedAndClosed(MessageEncoder.request(.setVringKick, payload: .vringFile(index: 0, hasFD: false)), fdCount: 1)
        try assertRejectedAndClosed(MessageEncoder.request(.setVringCall, payload: .vringFile(index: 0, hasFD: true)), fdCount: 2)
        try assertRejectedAndClosed(MessageEncoder.request(.setMemTable, payload: .memoryTable([
            MemoryRegionInfo(guestPhysAddr: 0, size: 4096, userAddr: 0x7000_0000, mmapOffset: 0),
        ])), fdCount: 3)
        try assertRejectedAndClosed(MessageEncoder.request(.remMemReg, payload: .memoryRegion(
            MemoryRegionInfo(guestPhysAddr: 0, size: 4096, userAddr: 0x7000_0000, mmapOffset: 0))), fdCount: 2)
        // Syntax errors.
        try assertRejectedAndClosed(MessageEncoder.request(.addMemReg, payload: .memoryRegion(
            MemoryRegionInfo(guestPhysAddr: .max, size: 2, userAddr: 0, mmapOffset: 0))), fdCount: 1)
        try assertRejectedAndClosed(MessageEncoder.request(.setVringErr, payload: .u64(1 << 40)), fdCount: 1)
        try assertRejectedAndClosed(MessageEncoder.frame(requestNumber: 5, flags: 1, payload: [9, 0, 0, 0, 0, 0, 0, 0]), fdCount: 2)
        // Size and header errors.
        try assertRejectedAndClosed(MessageEncoder.frame(requestNumber: 12, flags: 1, payload: [0, 0, 0, 0]), fdCount: 1)
        try assertRejectedAndClosed(MessageEncoder.frame(requestNumber: 12, flags: 1 | 1 << 2, payload: [0, 0, 0, 0, 0, 0, 0, 0]), fdCount: 1)
        // Unsupported requests, known and unknown.
        try assertRejectedAndClosed(MessageEncoder.frame(requestNumber: 21, flags: 1, payload: []), fdCount: 1)
        try assertRejectedAndClosed(MessageEncoder.frame(requestNumber: 1234, flags: 1, payload: []), fdCount: 1)
        // Fatal errors.
        try assertRejectedAndClosed(MessageEncoder.frame(requestNumber: 12, flags: 0, payload: []), fdCount: 1)
        try assertRejectedAndClosed(MessageEncoder.frame(requestNumber: 12, flags: 1, payload: [UInt8](repeating: 0, count: 4097)), fdCount: 1)
    }

    func testTruncatedDescriptorsRejectTheMessageAndCloseTheRest() throws {
        let fds = try makeEventFDs(1)
        var decoder = MessageDecoder()
        decoder.feed(MessageEncoder.request(.setMemTable, payload: .memoryTable([
            MemoryRegionInfo(guestPhysAddr: 0, size: 4096, userAddr: 0x7000_0000, mmapOffset: 0),
            MemoryRegionInfo(guestPhysAddr: 0x10_0000, size: 4096, userAddr: 0x7100_0000, mmapOffset: 0),
        ])), descriptors: ReceivedDescriptors(owning: fds), descriptorsTruncated: true)
        guard case .failure(let error)? = decoder.next() else { return XCTFail("expected a rejection") }
        XCTAssertEqual(error.reason, .descriptorsTruncated)
        XCTAssertFalse(error.isFatal)
        XCTAssertTrue(isClosed(fds[0]))
    }

    func testDescriptorsArrivingAfterAFatalErrorAreClosedAtOnce() throws {
        var decoder = MessageDecoder()
        let early = try makeEventFDs(1)
        // A good message's fds wait in the buffer behind a partial one; the fatal error must close them.
        decoder.feed(MessageEncoder.frame(requestNumber: 1, flags: 3, payload: []))
        decoder.feed(Array(MessageEncoder.request(.setVringKick, payload: .vringFile(index: 0, hasFD: true)).prefix(5)),
                     descriptors: ReceivedDescriptors(owning: early))
        guard case .failure(let error)? = decoder.next() else { return XCTFail("expected the fatal error") }
        XCTAssertTrue(error.isFatal)
        XCTAssertEqual(decoder.failure, error)
        XCTAssertTrue(isClosed(early[0]))
        XCTAssertNil(decoder.next())

        let late = try makeEventFDs(2)
        decoder.feed(MessageEncoder.request(.setVringKick, payload: .vringFile(index: 0, hasFD: true)),
                     descriptors: ReceivedDescriptors(owning: late))
        XCTAssertTrue(late.allSatisfy(isClosed))
        XCTAssertNil(decoder.next(), "nothing is decoded after a fatal error")
        XCTAssertEqual(decoder.bufferedByteCount, 0)
    }

    func testAcceptedDescriptorsStayOpenUntilTakenOrDropped() throws {
        let fds = try makeEventFDs(2)
        do {
            var decoder = MessageDecoder()
            decoder.feed(MessageEncoder.request(.setMemTable, payload: .memoryTable([
                MemoryRegionInfo(guestPhysAddr: 0, size: 4096, userAddr: 0x7000_0000, mmapOffset: 0),
                MemoryRegionInfo(guestPhysAddr: 0x10_0000, size: 4096, userAddr: 0x7100_0000, mmapOffset: 4096),
            ])), descriptors: ReceivedDescriptors(owning: fds))
            guard case .success(let message)? = decoder.next() else { return XCTFail("expected a message") }
            XCTAssertEqual(message.descriptors.count, 2)
            XCTAssertFalse(isClosed(fds[0]))
            XCTAssertFalse(isClosed(fds[1]))
            guard let kept = message.descriptors.take(1) else { return XCTFail("descriptor 1 missing") }
            let keptRaw = kept.rawValue
            XCTAssertEqual(keptRaw, fds[1])
            // kept goes out of scope with the message here: both are closed by then.
        }
        XCTAssertTrue(isClosed(fds[0]))
        XCTAssertTrue(isClosed(fds[1]))
    }

    func testDescriptorsOfAnUnfinishedMessageCloseWithTheDecoder() throws {
        let fds = try makeEventFDs(1)
        do {
            var decoder = MessageDecoder()
            let bytes = MessageEncoder.request(.setVringCall, payload: .vringFile(index: 2, hasFD: true))
            decoder.feed(Array(bytes.prefix(14)), descriptors: ReceivedDescriptors(owning: fds))
            XCTAssertNil(decoder.next())
            XCTAssertFalse(isClosed(fds[0]))
        }
        XCTAssertTrue(isClosed(fds[0]))
    }

    func testDescriptorsGoToTheLastMessageOfTheChunkTheyCameWith() throws {
        // What recvmsg returns when a front-end sends NUM, BASE, then KICK with its fd quickly:
        // the earlier data glued in front of the descriptor-carrying message.
        let kick = MessageEncoder.request(.setVringKick, payload: .vringFile(index: 0, hasFD: true))
        let front = MessageEncoder.request(.setVringNum, payload: .vringState(index: 0, num: 256))
            + MessageEncoder.request(.setVringBase, payload: .vringState(index: 0, num: 0))
        for split in [kick.count, 1, 12, 15] {
            let fds = try makeEventFDs(1)
            var decoder = MessageDecoder()
            decoder.feed(front + kick.prefix(split), descriptors: ReceivedDescriptors(owning: fds))
            decoder.feed(Array(kick.dropFirst(split)))
            var outcomes: [Outcome] = []
            while let result = decoder.next() { outcomes.append(Outcome(result)) }
            XCTAssertEqual(outcomes, [
                .message(.setVringNum, flags: 1, .vringState(index: 0, num: 256), fds: 0),
                .message(.setVringBase, flags: 1, .vringState(index: 0, num: 0), fds: 0),
                .message(.setVringKick, flags: 1, .vringFile(index: 0, hasFD: true), fds: 1),
            ], "kick cut after \(split) bytes")
        }
    }

    func testDescriptorsFromSeveralChunksOfOneMessageAreMerged() throws {
        // An unusual sender: header and payload in two sendmsg calls, an fd on each. Both
        // belong to the one message, whose policy wants two.
        let fds = try makeEventFDs(2)
        let bytes = MessageEncoder.request(.setMemTable, payload: .memoryTable([
            MemoryRegionInfo(guestPhysAddr: 0, size: 4096, userAddr: 0x7000_0000, mmapOffset: 0),
            MemoryRegionInfo(guestPhysAddr: 0x10_0000, size: 4096, userAddr: 0x7100_0000, mmapOffset: 0),
        ]))
        var decoder = MessageDecoder()
        decoder.feed(Array(bytes.prefix(12)), descriptors: ReceivedDescriptors(owning: [fds[0]]))
        decoder.feed(Array(bytes.dropFirst(12)), descriptors: ReceivedDescriptors(owning: [fds[1]]))
        guard case .success(let message)? = decoder.next() else { return XCTFail("expected a message") }
        XCTAssertEqual(message.descriptors.count, 2)
        XCTAssertEqual(message.descriptors.take(0)?.rawValue, fds[0])
        XCTAssertEqual(message.descriptors.take(1)?.rawValue, fds[1])
    }

    func testDescriptorsRideWithTheirMessageThroughARealSocket() throws {
        let (frontEnd, backEnd) = try UnixSocket.pair()
        defer { _ = Glibc.close(frontEnd); _ = Glibc.close(backEnd) }
        let kick = try makeEventFDs(1)
        let call = try makeEventFDs(1)
        defer { _ = Glibc.close(kick[0]); _ = Glibc.close(call[0]) }

        try UnixSocket.send(frontEnd, bytes: MessageEncoder.request(.getFeatures))
        try UnixSocket.send(frontEnd, bytes: MessageEncoder.request(.setVringKick, payload: .vringFile(index: 0, hasFD: true)), fds: kick)
        try UnixSocket.send(frontEnd, bytes: MessageEncoder.request(.setVringNum, payload: .vringState(index: 0, num: 256)))
        try UnixSocket.send(frontEnd, bytes: MessageEncoder.request(.setVringCall, payload: .vringFile(index: 1, hasFD: true)), fds: call)

        var decoder = MessageDecoder()
        var outcomes: [Outcome] = []
        var kickReceived: Int32 = -1
        var buffer = [UInt8](repeating: 0, count: 4096)
        while outcomes.count < 4 {
            let received = try buffer.withUnsafeMutableBytes { try UnixSocket.receive(backEnd, into: $0) }
            guard let received, received.count > 0 else { return XCTFail("stream ended early") }
            buffer.withUnsafeBytes {
                decoder.feed(UnsafeRawBufferPointer(rebasing: $0[0..<received.count]), descriptors: received.fds,
                             descriptorsTruncated: received.truncated)
            }
            while let result = decoder.next() {
                if case .success(let message) = result, message.request == .setVringKick {
                    kickReceived = message.descriptors.take(0)?.release() ?? -1
                }
                outcomes.append(Outcome(result))
            }
        }
        defer { if kickReceived >= 0 { _ = Glibc.close(kickReceived) } }
        XCTAssertEqual(outcomes, [
            .message(.getFeatures, flags: 1, .none, fds: 0),
            .message(.setVringKick, flags: 1, .vringFile(index: 0, hasFD: true), fds: 1),
            .message(.setVringNum, flags: 1, .vringState(index: 0, num: 256), fds: 0),
            .message(.setVringCall, flags: 1, .vringFile(index: 1, hasFD: true), fds: 1),
        ])
        // The received descriptor is the kick eventfd: a signal on ours shows up on it.
        EventFD.signal(kick[0])
        XCTAssertEqual(EventFD.drain(kickReceived), 1)
    }
}
