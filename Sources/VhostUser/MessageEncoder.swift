/// Builds vhost-user messages as bytes: the back-end's replies, and the requests a
/// (mock) front-end sends. Descriptors are not part of the bytes; send them alongside.
public enum MessageEncoder {
    /// A reply to `request`: flags = version | reply, then `payload` (a u64 or a vring state).
    public static func reply(to request: VhostUserRequest, payload: VhostUserMessage.Payload) -> [UInt8] {
        frame(requestNumber: request.rawValue, flags: VhostUserHeader.version | VhostUserHeader.replyFlag,
              payload: encode(payload))
    }

    /// A REPLY_ACK reply: u64 `status`, 0 for success and non-zero for failure (vhost-user.rst, "REPLY_ACK").
    /// Takes the raw number so that an unsupported request can be refused too.
    public static func ack(to requestNumber: UInt32, status: UInt64) -> [UInt8] {
        frame(requestNumber: requestNumber, flags: VhostUserHeader.version | VhostUserHeader.replyFlag,
              payload: encode(.u64(status)))
    }

    /// A front-end request; `needReply` sets the need_reply flag.
    public static func request(_ request: VhostUserRequest, payload: VhostUserMessage.Payload = .none,
                               needReply: Bool = false) -> [UInt8]
    {
        let flags = VhostUserHeader.version | (needReply ? VhostUserHeader.needReplyFlag : 0)
        return frame(requestNumber: request.rawValue, flags: flags, payload: encode(payload))
    }

    /// A message with any header and payload bytes, unchecked: for tests that forge bad input.
    public static func frame(requestNumber: UInt32, flags: UInt32, payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(VhostUserHeader.size + payload.count)
        append(requestNumber, to: &bytes)
        append(flags, to: &bytes)
        append(UInt32(truncatingIfNeeded: payload.count), to: &bytes)
        bytes.append(contentsOf: payload)
        return bytes
    }

    /// The wire form of a payload (vhost-user.rst, "Payload"), little-endian.
    public static func encode(_ payload: VhostUserMessage.Payload) -> [UInt8] {
        var bytes: [UInt8] = []
        switch payload {
        case .none:
            break
        case .u64(let value):
            append(value, to: &bytes)
        case .vringState(let index, let num):
            append(index, to: &bytes)
            append(num, to: &bytes)
        case .vringAddress(let address):
            append(address.index, to: &bytes)
            append(address.flags, to: &bytes)
            append(address.descUserAddr, to: &bytes)
            append(address.usedUserAddr, to: &bytes)
            append(address.availUserAddr, to: &bytes)
            append(address.logGuestAddr, to: &bytes)
        case .vringFile(let index, let hasFD):
            append(UInt64(index) | (hasFD ? 0 : VhostUserMessage.vringFileNoFDFlag), to: &bytes)
        case .memoryTable(let regions):
            append(UInt32(truncatingIfNeeded: regions.count), to: &bytes)
            append(UInt32(0), to: &bytes)  // padding
            for region in regions { append(region, to: &bytes) }
        case .memoryRegion(let region):
            append(UInt64(0), to: &bytes)  // padding
            append(region, to: &bytes)
        case .dirtyLog(let size, let offset):
            append(size, to: &bytes)
            append(offset, to: &bytes)
        }
        return bytes
    }

    private static func append(_ region: MemoryRegionInfo, to bytes: inout [UInt8]) {
        append(region.guestPhysAddr, to: &bytes)
        append(region.size, to: &bytes)
        append(region.userAddr, to: &bytes)
        append(region.mmapOffset, to: &bytes)
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        // Little-endian on the wire, matching the decoder.
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
}
