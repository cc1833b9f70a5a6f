/// What one supported request must look like: payload shape and size, descriptors, reply.
/// This is the second check layer; `VhostUserMessage.Payload.parse` is the first (syntax).
public struct RequestPolicy: Equatable, Sendable {
    /// The payload shape a request carries (vhost-user.rst, "Payload").
    public enum PayloadLayout: Equatable, Sendable {
        /// No payload: size 0.
        case empty
        /// A single u64: 8 bytes.
        case u64
        /// A vring state description, index u32 and num u32: 8 bytes.
        case vringState
        /// A vring address description: 40 bytes.
        case vringAddress
        /// A u64 with the vring index in bits 0-7 and "no fd" in bit 8: 8 bytes.
        case vringFile
        /// A memory regions description: 8 bytes of count and padding, then 32 bytes per region, at most 8.
        case memoryTable
        /// Padding u64 and one region: 40 bytes.
        case memoryRegion
        /// A log description, size u64 and offset u64: 16 bytes.
        case logDescription

        /// The one size this layout allows, or nil when the size follows from the payload (memoryTable).
        public var fixedSize: Int? {
            switch self {
            case .empty: 0
            case .u64, .vringState, .vringFile: 8
            case .logDescription: 16
            case .vringAddress: VringAddress.wireSize
            case .memoryRegion: 8 + MemoryRegionInfo.wireSize
            case .memoryTable: nil
            }
        }

        /// The smallest size that could be valid: the fixed size, or the table's count and padding.
        public var minimumSize: Int { fixedSize ?? 8 }

        /// The largest size that could be valid.
        public var maximumSize: Int { fixedSize ?? 8 + VhostUserMessage.maxMemoryTableRegions * MemoryRegionInfo.wireSize }

        /// Checks a payload size before parsing: exact for fixed layouts, at least the count and
        /// padding for a table (whose exact size follows from its count, checked by the parser,
        /// which can then name a bad count rather than just a bad size).
        func checkSize(_ size: Int) -> VhostUserProtocolError.Reason? {
            if let fixed = fixedSize {
                return size == fixed ? nil : .payloadSizeMismatch(expected: fixed, got: size)
            }
            return size < minimumSize ? .payloadSizeMismatch(expected: minimumSize, got: size) : nil
        }
    }

    /// How many descriptors must ride with the request.
    public enum DescriptorPolicy: Equatable, Sendable {
        /// None.
        case none
        /// Exactly one, unless the vring file payload sets bit 8 ("no fd"): then none.
        case oneUnlessNoFDFlag
        /// One per memory region, in region order.
        case onePerRegion
        /// Exactly one.
        case exactlyOne
        /// None or one; one is tolerated and closed unused (vhost-user.rst, REM_MEM_REG: back-ends
        /// "MAY accept messages with one file descriptor" from older front-ends).
        case atMostOneIgnored
    }

    /// The payload the back-end's reply carries for this request, if the request solicits one by itself.
    public enum ReplyLayout: Equatable, Sendable {
        /// No reply unless need_reply asks for a REPLY_ACK u64 status.
        case none
        /// A reply with no payload (SET_LOG_BASE's, once LOG_SHMFD was negotiated).
        case empty
        /// A u64.
        case u64
        /// A vring state description.
        case vringState
    }

    /// The request's payload shape.
    public let payload: PayloadLayout
    /// The request's descriptor policy.
    public let descriptors: DescriptorPolicy
    /// The request's own reply, regardless of need_reply.
    public let reply: ReplyLayout

    /// A policy row.
    public init(payload: PayloadLayout, descriptors: DescriptorPolicy = .none, reply: ReplyLayout = .none) {
        self.payload = payload
        self.descriptors = descriptors
        self.reply = reply
    }

    /// The table: the policy of every request Ferry supports, nil for the rest.
    /// Payload and reply shapes are from vhost-user.rst, "Front-end message types";
    /// descriptor rules from its "Communication" list and each message's text.
    public static func of(_ request: VhostUserRequest) -> RequestPolicy? {
        switch request {
        case .getFeatures: RequestPolicy(payload: .empty, reply: .u64)
        case .setFeatures: RequestPolicy(payload: .u64)
        case .setOwner: RequestPolicy(payload: .empty)
        // Deprecated; the spec recommends ignoring it or disabling all rings.
        case .resetOwner: RequestPolicy(payload: .empty)
        case .setMemTable: RequestPolicy(payload: .memoryTable, descriptors: .onePerRegion)
        case .setVringNum: RequestPolicy(payload: .vringState)
        case .setVringAddr: RequestPolicy(payload: .vringAddress)
        case .setVringBase: RequestPolicy(payload: .vringState)
        case .getVringBase: RequestPolicy(payload: .vringState, reply: .vringState)
        case .setVringKick: RequestPolicy(payload: .vringFile, descriptors: .oneUnlessNoFDFlag)
        case .setVringCall: RequestPolicy(payload: .vringFile, descriptors: .oneUnlessNoFDFlag)
        case .setVringErr: RequestPolicy(payload: .vringFile, descriptors: .oneUnlessNoFDFlag)
        case .getProtocolFeatures: RequestPolicy(payload: .empty, reply: .u64)
        case .setProtocolFeatures: RequestPolicy(payload: .u64)
        case .getQueueNum: RequestPolicy(payload: .empty, reply: .u64)
        case .setVringEnable: RequestPolicy(payload: .vringState)
        // The guest's MAC sits in the first 6 bytes of a u64.
        case .sendRARP: RequestPolicy(payload: .u64)
        case .netSetMTU: RequestPolicy(payload: .u64)
        case .getMaxMemSlots: RequestPolicy(payload: .empty, reply: .u64)
        case .addMemReg: RequestPolicy(payload: .memoryRegion, descriptors: .exactlyOne)
        case .remMemReg: RequestPolicy(payload: .memoryRegion, descriptors: .atMostOneIgnored)
        case .setStatus: RequestPolicy(payload: .u64)
        case .getStatus: RequestPolicy(payload: .empty, reply: .u64)
        // With LOG_SHMFD the log arrives as a descriptor and the back-end answers
        // once it has mapped it (vhost-user.rst, "Communication"; QEMU waits for that reply).
        case .setLogBase: RequestPolicy(payload: .logDescription, descriptors: .exactlyOne, reply: .empty)

        case .setLogFD, .setBackendReqFD, .iotlbMessage, .setVringEndian, .getConfig, .setConfig,
             .createCryptoSession, .closeCryptoSession, .postcopyAdvise, .postcopyListen, .postcopyEnd,
             .getInflightFD, .setInflightFD, .gpuSetSocket, .resetDevice, .vringKick:
            nil
        }
    }

    /// Every request with a policy, in request-number order.
    public static let supportedRequests: [VhostUserRequest] = VhostUserRequest.allCases.filter { of($0) != nil }

    /// How many descriptors this request must carry, given its parsed payload.
    public func expectedDescriptorCount(for parsed: VhostUserMessage.Payload) -> ClosedRange<Int> {
        switch descriptors {
        case .none:
            return 0...0
        case .exactlyOne:
            return 1...1
        case .atMostOneIgnored:
            return 0...1
        case .oneUnlessNoFDFlag:
            if case .vringFile(_, let hasFD) = parsed, !hasFD { return 0...0 }
            return 1...1
        case .onePerRegion:
            if case .memoryTable(let regions) = parsed { return regions.count...regions.count }
            return 0...0
        }
    }
}
