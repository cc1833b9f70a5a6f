/// A message the codec refused: which request it was, and why.
public struct VhostUserProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The header's request number, known or not.
    public let requestNumber: UInt32
    /// The header's flags word.
    public let flags: UInt32
    /// What was wrong.
    public let reason: Reason

    /// An error about the message whose header held `requestNumber` and `flags`.
    public init(requestNumber: UInt32, flags: UInt32, reason: Reason) {
        self.requestNumber = requestNumber
        self.flags = flags
        self.reason = reason
    }

    /// Why a message was refused.
    public enum Reason: Equatable, Sendable {
        /// The header's version bits are not 1; the rest of the header cannot be trusted. Fatal.
        case badVersion(UInt32)
        /// The size field is above `VhostUserHeader.maxPayloadSize`; we will not buffer it. Fatal.
        case payloadTooLarge(size: UInt32)
        /// The request number is unknown, or known but not supported by Ferry.
        case unsupportedRequest
        /// Header flag bits outside those the direction allows (version, reply or need_reply) are set.
        case reservedFlagBits(UInt32)
        /// A reply was expected and the header's reply bit is clear.
        case notAReply
        /// The payload is not the size the request (or its region count) demands.
        case payloadSizeMismatch(expected: Int, got: Int)
        /// The message carried the wrong number of descriptors.
        case descriptorCountMismatch(expected: ClosedRange<Int>, got: Int)
        /// SET_MEM_TABLE announced more regions than the table holds.
        case tooManyRegions(count: UInt32)
        /// A memory region that no one could map safely.
        case invalidRegion(index: Int, RegionProblem)
        /// A vring file payload sets bits beyond the index (0-7) and "no fd" (8).
        case reservedPayloadBits(UInt64)
        /// The kernel dropped descriptors that rode with this message (MSG_CTRUNC).
        case descriptorsTruncated
    }

    /// Why a memory region description is unusable.
    public enum RegionProblem: Equatable, Sendable {
        /// The region has size 0.
        case zeroSize
        /// guestPhysAddr + size does not fit in 64 bits.
        case guestRangeOverflows
        /// userAddr + size does not fit in 64 bits.
        case userRangeOverflows
        /// mmapOffset + size does not fit in 64 bits.
        case mmapRangeOverflows
    }

    /// The request, when its number is one the spec defines.
    public var request: VhostUserRequest? { VhostUserRequest(rawValue: requestNumber) }

    /// True when framing is lost (the stream cannot be read past this point): close the connection.
    /// Otherwise the message was skipped whole and the next one can be read; the device may answer
    /// with a failing REPLY_ACK.
    public var isFatal: Bool {
        switch reason {
        case .badVersion, .payloadTooLarge: true
        default: false
        }
    }

    /// True when the header's need_reply bit is set: a REPLY_ACK failure may be owed.
    public var needsReply: Bool { flags & VhostUserHeader.needReplyFlag != 0 }

    /// A sentence naming the request and what was wrong with it.
    public var description: String {
        let name = VhostUserRequest.describe(requestNumber)
        switch reason {
        case .badVersion(let version):
            return "\(name): header version \(version), expected \(VhostUserHeader.version) (connection out of sync)"
        case .payloadTooLarge(let size):
            return "\(name): payload size \(size) exceeds the \(VhostUserHeader.maxPayloadSize)-byte limit (connection out of sync)"
        case .unsupportedRequest:
            return "\(name): not supported"
        case .reservedFlagBits(let flags):
            return "\(name): header flags 0x\(String(flags, radix: 16)) set bits that are reserved in this direction"
        case .notAReply:
            return "\(name): expected a reply, but the header's reply bit is clear"
        case .payloadSizeMismatch(let expected, let got):
            return "\(name): payload is \(got) bytes, expected \(expected)"
        case .descriptorCountMismatch(let expected, let got):
            let want = expected.lowerBound == expected.upperBound
                ? "\(expected.lowerBound)" : "\(expected.lowerBound) to \(expected.upperBound)"
            return "\(name): carried \(got) file descriptor\(got == 1 ? "" : "s"), expected \(want)"
        case .tooManyRegions(let count):
            return "\(name): \(count) memory regions, at most \(VhostUserMessage.maxMemoryTableRegions)"
        case .invalidRegion(let index, let problem):
            let why = switch problem {
            case .zeroSize: "its size is 0"
            case .guestRangeOverflows: "guest address + size overflows 64 bits"
            case .userRangeOverflows: "user address + size overflows 64 bits"
            case .mmapRangeOverflows: "mmap offset + size overflows 64 bits"
            }
            return "\(name): memory region \(index) is invalid: \(why)"
        case .reservedPayloadBits(let value):
            return "\(name): vring index payload 0x\(String(value, radix: 16)) sets reserved bits (only 0-7 index and 8 no-fd are defined)"
        case .descriptorsTruncated:
            return "\(name): the kernel dropped file descriptors sent with it (MSG_CTRUNC)"
        }
    }
}
