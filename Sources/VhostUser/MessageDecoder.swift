import Platform

/// Turns a byte stream and the descriptors that rode on it into checked messages, in order.
///
/// Feed each received chunk with its descriptors, then call `next()` until it returns nil.
/// Drained that way, the decoder holds less than one message (12 + 4096 bytes) between reads.
///
/// Descriptors belong to the message holding the *last* byte of the chunk they came with. The
/// kernel attaches SCM_RIGHTS data to the first byte of the sendmsg that carried it, but a stream
/// recvmsg may first return earlier descriptor-less data (a front-end's SET_VRING_NUM, BASE and
/// ADDR ahead of the KICK that carries the fd), and it stops right after the descriptor-carrying
/// data (or earlier, when the buffer fills). So that message is the last one to start in the
/// chunk, or the one in progress if none starts there (Linux unix_stream_read_generic; checked
/// with socketpair experiments).
public struct MessageDecoder: ~Copyable, Sendable {
    /// Which side of the connection decodes: it decides whether requests or replies are expected.
    public enum Role: Sendable {
        /// A back-end reads front-end requests.
        case backEnd
        /// A front-end (the test mock) reads back-end replies.
        case frontEnd
    }

    /// Descriptors (or a truncation) that arrived with the chunk whose last byte is at stream offset `offset`.
    private struct Attachment: Sendable {
        var offset: Int
        var descriptors: ReceivedDescriptors
        var truncated: Bool
    }

    /// Which direction this decoder reads.
    public let role: Role
    private var buffer: [UInt8] = []
    // Consumed bytes are dropped lazily (on the next feed), so draining many small messages
    // from one chunk does not shift the buffer once per message.
    private var readIndex = 0
    // Stream offset of buffer[0]; attachments are kept in stream offsets so they survive compaction.
    private var bufferStart = 0
    private var attachments: [Attachment] = []
    /// The fatal error that stopped this decoder, if any; after it, input is dropped.
    public private(set) var failure: VhostUserProtocolError?

    /// A decoder for `role` (a back-end by default).
    public init(role: Role = .backEnd) {
        self.role = role
    }

    /// Bytes received but not yet returned as messages.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// Adds a received chunk. Takes ownership of every descriptor in `descriptors`;
    /// `descriptorsTruncated` reports MSG_CTRUNC for this chunk.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, descriptors: ReceivedDescriptors = ReceivedDescriptors(),
                              descriptorsTruncated: Bool = false)
    {
        let incoming = descriptors.takeAll()
        guard failure == nil else {
            // The connection is going away; nothing more will be read, so close what arrived now.
            incoming.closeAll()
            return
        }
        if readIndex > 0 {
            buffer.removeSubrange(0..<readIndex)
            bufferStart += readIndex
            readIndex = 0
        }
        if incoming.count > 0 || descriptorsTruncated {
            // The stream offset of the chunk's last byte (of the next byte for an empty chunk,
            // which a stream socket never delivers with descriptors, but a caller might).
            let offset = bufferStart + buffer.count + max(bytes.count - 1, 0)
            // Empty chunks add to the same offset; merging keeps one attachment per offset, so
            // what we hold stays bounded by the buffered bytes.
            if let last = attachments.last, last.offset == offset {
                last.descriptors.append(takingAllOf: incoming)
                attachments[attachments.count - 1].truncated = last.truncated || descriptorsTruncated
            } else {
                attachments.append(Attachment(offset: offset, descriptors: incoming, truncated: descriptorsTruncated))
            }
        }
        buffer.append(contentsOf: bytes)
    }

    /// Adds a received chunk held in an array; see `feed(_:descriptors:descriptorsTruncated:)`.
    public mutating func feed(_ bytes: [UInt8], descriptors: ReceivedDescriptors = ReceivedDescriptors(),
                              descriptorsTruncated: Bool = false)
    {
        bytes.withUnsafeBytes { feed($0, descriptors: descriptors, descriptorsTruncated: descriptorsTruncated) }
    }

    /// The next message or error, in stream order; nil when more bytes are needed.
    /// A fatal error is returned once, and nil ever after.
    public mutating func next() -> Result<VhostUserMessage, VhostUserProtocolError>? {
        guard failure == nil else { return nil }
        let available = buffer.count - readIndex
        guard available >= VhostUserHeader.size else { return nil }

        let requestNumber = headerField(0)
        let flags = headerField(4)
        let size = headerField(8)
        if let reason = Self.framingProblem(flags: flags, size: size) {
            return .failure(fail(VhostUserProtocolError(requestNumber: requestNumber, flags: flags, reason: reason)))
        }
        // size <= maxPayloadSize, checked just above: the sum cannot overflow.
        let total = VhostUserHeader.size + Int(size)
        guard available >= total else { return nil }

        let end = bufferStart + readIndex + total
        let (descriptors, truncated) = takeAttachments(before: end)
        let payloadStart = readIndex + VhostUserHeader.size
        readIndex += total
        let result = buffer.withUnsafeBytes { raw in
            Self.decode(requestNumber: requestNumber, flags: flags,
                        payload: UnsafeRawBufferPointer(rebasing: raw[payloadStart..<payloadStart + Int(size)]),
                        descriptors: descriptors, descriptorsTruncated: truncated, role: role)
        }
        if readIndex == buffer.count {
            bufferStart += readIndex
            readIndex = 0
            buffer.removeAll(keepingCapacity: true)
        }
        return result
    }

    // MARK: - Framing

    private func headerField(_ offset: Int) -> UInt32 {
        // SAFETY: the one caller, next(), checked that a whole header (VhostUserHeader.size = 12
        // bytes) is buffered at readIndex, and offset is 0, 4 or 8: the 4 bytes lie in `buffer`.
        buffer.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: readIndex + offset, as: UInt32.self)) }
    }

    /// Header problems after which the stream cannot be followed: the size field is meaningless
    /// under another version, and an oversized message is one we refuse to buffer.
    private static func framingProblem(flags: UInt32, size: UInt32) -> VhostUserProtocolError.Reason? {
        if flags & VhostUserHeader.versionMask != VhostUserHeader.version {
            return .badVersion(flags & VhostUserHeader.versionMask)
        }
        if size > UInt32(VhostUserHeader.maxPayloadSize) { return .payloadTooLarge(size: size) }
        return nil
    }

    private mutating func fail(_ error: VhostUserProtocolError) -> VhostUserProtocolError {
        failure = error
        buffer = []
        readIndex = 0
        for attachment in attachments { attachment.descriptors.closeAll() }
        attachments = []
        return error
    }

    /// The descriptors of every chunk whose last byte lies before stream offset `end`, merged.
    private mutating func takeAttachments(before end: Int) -> (ReceivedDescriptors, Bool) {
        var count = 0
        while count < attachments.count, attachments[count].offset < end { count += 1 }
        if count == 0 { return (ReceivedDescriptors(), false) }
        let taken = attachments[0..<count]
        attachments.removeFirst(count)
        let truncated = taken.contains { $0.truncated }
        if count == 1, let only = taken.first { return (only.descriptors, truncated) }
        // Only a sender splitting one message over several fd-carrying sendmsg calls gets here.
        let merged = ReceivedDescriptors()
        for attachment in taken { merged.append(takingAllOf: attachment.descriptors) }
        return (merged, truncated)
    }

    // MARK: - One framed message

    /// Checks one framed message: request and flags, then payload size and syntax, then descriptors.
    /// On any failure the descriptors are closed before the error is returned.
    static func decode(requestNumber: UInt32, flags: UInt32, payload: UnsafeRawBufferPointer,
                       descriptors: ReceivedDescriptors, descriptorsTruncated: Bool, role: Role)
        -> Result<VhostUserMessage, VhostUserProtocolError>
    {
        func refuse(_ reason: VhostUserProtocolError.Reason) -> Result<VhostUserMessage, VhostUserProtocolError> {
            descriptors.closeAll()
            return .failure(VhostUserProtocolError(requestNumber: requestNumber, flags: flags, reason: reason))
        }
        if let reason = framingProblem(flags: flags, size: UInt32(clamping: payload.count)) { return refuse(reason) }
        guard let request = VhostUserRequest(rawValue: requestNumber), let policy = RequestPolicy.of(request) else {
            return refuse(.unsupportedRequest)
        }

        let layout: RequestPolicy.PayloadLayout
        switch role {
        case .backEnd:
            guard flags & ~(VhostUserHeader.versionMask | VhostUserHeader.needReplyFlag) == 0 else {
                return refuse(.reservedFlagBits(flags))
            }
            layout = policy.payload
        case .frontEnd:
            guard flags & ~(VhostUserHeader.versionMask | VhostUserHeader.replyFlag) == 0 else {
                return refuse(.reservedFlagBits(flags))
            }
            guard flags & VhostUserHeader.replyFlag != 0 else { return refuse(.notAReply) }
            switch policy.reply {
            // A request with no reply of its own is answered only by a REPLY_ACK u64 status.
            case .none, .u64: layout = .u64
            case .empty: layout = .empty
            case .vringState: layout = .vringState
            }
        }
        if descriptorsTruncated { return refuse(.descriptorsTruncated) }

        if let reason = layout.checkSize(payload.count) { return refuse(reason) }
        let parsed: VhostUserMessage.Payload
        switch VhostUserMessage.Payload.parse(layout, from: payload) {
        case .parsed(let value): parsed = value
        case .refused(let reason): return refuse(reason)
        }

        // Replies never carry descriptors on the front-end channel.
        let expected = role == .backEnd ? policy.expectedDescriptorCount(for: parsed) : 0...0
        guard expected.contains(descriptors.count) else {
            return refuse(.descriptorCountMismatch(expected: expected, got: descriptors.count))
        }
        return .success(VhostUserMessage(request: request, flags: flags, payload: parsed, descriptors: descriptors))
    }
}
