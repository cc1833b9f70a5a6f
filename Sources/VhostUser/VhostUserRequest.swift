/// A front-end → back-end request number (vhost-user.rst, "Front-end message types").
public enum VhostUserRequest: UInt32, CaseIterable, Sendable {
    // Every value below is the `:id:` of the message of the same name in
    // vhost-user.rst, "Front-end message types". Numbers we do not support are
    // listed too, so an error can name what the front-end asked for.
    case getFeatures = 1
    case setFeatures = 2
    case setOwner = 3
    case resetOwner = 4
    case setMemTable = 5
    case setLogBase = 6
    case setLogFD = 7
    case setVringNum = 8
    case setVringAddr = 9
    case setVringBase = 10
    case getVringBase = 11
    case setVringKick = 12
    case setVringCall = 13
    case setVringErr = 14
    case getProtocolFeatures = 15
    case setProtocolFeatures = 16
    case getQueueNum = 17
    case setVringEnable = 18
    case sendRARP = 19
    case netSetMTU = 20
    case setBackendReqFD = 21
    case iotlbMessage = 22
    case setVringEndian = 23
    case getConfig = 24
    case setConfig = 25
    case createCryptoSession = 26
    case closeCryptoSession = 27
    case postcopyAdvise = 28
    case postcopyListen = 29
    case postcopyEnd = 30
    case getInflightFD = 31
    case setInflightFD = 32
    case gpuSetSocket = 33
    case resetDevice = 34
    case vringKick = 35
    case getMaxMemSlots = 36
    case addMemReg = 37
    case remMemReg = 38
    case setStatus = 39
    case getStatus = 40

    /// The spec's name for the request, as logs and errors print it.
    public var specName: String {
        switch self {
        case .getFeatures: "VHOST_USER_GET_FEATURES"
        case .setFeatures: "VHOST_USER_SET_FEATURES"
        case .setOwner: "VHOST_USER_SET_OWNER"
        case .resetOwner: "VHOST_USER_RESET_OWNER"
        case .setMemTable: "VHOST_USER_SET_MEM_TABLE"
        case .setLogBase: "VHOST_USER_SET_LOG_BASE"
        case .setLogFD: "VHOST_USER_SET_LOG_FD"
        case .setVringNum: "VHOST_USER_SET_VRING_NUM"
        case .setVringAddr: "VHOST_USER_SET_VRING_ADDR"
        case .setVringBase: "VHOST_USER_SET_VRING_BASE"
        case .getVringBase: "VHOST_USER_GET_VRING_BASE"
        case .setVringKick: "VHOST_USER_SET_VRING_KICK"
        case .setVringCall: "VHOST_USER_SET_VRING_CALL"
        case .setVringErr: "VHOST_USER_SET_VRING_ERR"
        case .getProtocolFeatures: "VHOST_USER_GET_PROTOCOL_FEATURES"
        case .setProtocolFeatures: "VHOST_USER_SET_PROTOCOL_FEATURES"
        case .getQueueNum: "VHOST_USER_GET_QUEUE_NUM"
        case .setVringEnable: "VHOST_USER_SET_VRING_ENABLE"
        case .sendRARP: "VHOST_USER_SEND_RARP"
        case .netSetMTU: "VHOST_USER_NET_SET_MTU"
        case .setBackendReqFD: "VHOST_USER_SET_BACKEND_REQ_FD"
        case .iotlbMessage: "VHOST_USER_IOTLB_MSG"
        case .setVringEndian: "VHOST_USER_SET_VRING_ENDIAN"
        case .getConfig: "VHOST_USER_GET_CONFIG"
        case .setConfig: "VHOST_USER_SET_CONFIG"
        case .createCryptoSession: "VHOST_USER_CREATE_CRYPTO_SESSION"
        case .closeCryptoSession: "VHOST_USER_CLOSE_CRYPTO_SESSION"
        case .postcopyAdvise: "VHOST_USER_POSTCOPY_ADVISE"
        case .postcopyListen: "VHOST_USER_POSTCOPY_LISTEN"
        case .postcopyEnd: "VHOST_USER_POSTCOPY_END"
        case .getInflightFD: "VHOST_USER_GET_INFLIGHT_FD"
        case .setInflightFD: "VHOST_USER_SET_INFLIGHT_FD"
        case .gpuSetSocket: "VHOST_USER_GPU_SET_SOCKET"
        case .resetDevice: "VHOST_USER_RESET_DEVICE"
        case .vringKick: "VHOST_USER_VRING_KICK"
        case .getMaxMemSlots: "VHOST_USER_GET_MAX_MEM_SLOTS"
        case .addMemReg: "VHOST_USER_ADD_MEM_REG"
        case .remMemReg: "VHOST_USER_REM_MEM_REG"
        case .setStatus: "VHOST_USER_SET_STATUS"
        case .getStatus: "VHOST_USER_GET_STATUS"
        }
    }

    /// "NAME (n)" for a known number, "request n" otherwise, so errors read the same either way.
    public static func describe(_ number: UInt32) -> String {
        if let request = VhostUserRequest(rawValue: number) { return "\(request.specName) (\(number))" }
        return "request \(number)"
    }
}

/// Protocol feature bits, negotiated with GET/SET_PROTOCOL_FEATURES (vhost-user.rst, "Protocol features").
public struct VhostUserProtocolFeatures: OptionSet, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    // Bit numbers from vhost-user.rst, "Protocol features" (VHOST_USER_PROTOCOL_F_*).
    /// VHOST_USER_PROTOCOL_F_MQ (bit 0): GET_QUEUE_NUM is available.
    public static let mq = Self(rawValue: 1 << 0)
    /// VHOST_USER_PROTOCOL_F_LOG_SHMFD (bit 1): the dirty log arrives as a shared-memory fd.
    public static let logShmfd = Self(rawValue: 1 << 1)
    /// VHOST_USER_PROTOCOL_F_RARP (bit 2): SEND_RARP may be sent after migration.
    public static let rarp = Self(rawValue: 1 << 2)
    /// VHOST_USER_PROTOCOL_F_REPLY_ACK (bit 3): need_reply asks for a u64 status reply.
    public static let replyAck = Self(rawValue: 1 << 3)
    /// VHOST_USER_PROTOCOL_F_MTU (bit 4): NET_SET_MTU may be sent.
    public static let mtu = Self(rawValue: 1 << 4)
    /// VHOST_USER_PROTOCOL_F_BACKEND_REQ (bit 5, formerly SLAVE_REQ): a back-end → front-end channel.
    public static let backendReq = Self(rawValue: 1 << 5)
    /// VHOST_USER_PROTOCOL_F_CONFIG (bit 9): GET/SET_CONFIG are available.
    public static let config = Self(rawValue: 1 << 9)
    /// VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD (bit 12): GET/SET_INFLIGHT_FD are available.
    public static let inflightShmfd = Self(rawValue: 1 << 12)
    /// VHOST_USER_PROTOCOL_F_RESET_DEVICE (bit 13): RESET_DEVICE replaces RESET_OWNER.
    public static let resetDevice = Self(rawValue: 1 << 13)
    /// VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS (bit 15): ADD/REM_MEM_REG and GET_MAX_MEM_SLOTS.
    public static let configureMemSlots = Self(rawValue: 1 << 15)
    /// VHOST_USER_PROTOCOL_F_STATUS (bit 16): SET/GET_STATUS carry the virtio device status.
    public static let status = Self(rawValue: 1 << 16)
}

/// The 12-byte message header's layout and flag bits (vhost-user.rst, "Message Specification" / "Header").
public enum VhostUserHeader {
    /// Three u32 fields: request, flags, size (vhost-user.rst, "Header").
    public static let size = 12
    /// The largest payload we accept. The biggest message we support (SET_MEM_TABLE with 8
    /// regions) is 264 bytes; 4096 leaves room for others without letting a peer make us buffer more.
    public static let maxPayloadSize = 4096

    /// The lower 2 bits of flags hold the version (vhost-user.rst, "Header").
    public static let versionMask: UInt32 = 0x3
    /// The only version the spec defines, "currently 0x01" (vhost-user.rst, "Header").
    public static let version: UInt32 = 0x1
    /// Bit 2: set on every reply from the back-end (vhost-user.rst, "Header").
    public static let replyFlag: UInt32 = 1 << 2
    /// Bit 3: the front-end asks for a REPLY_ACK status (vhost-user.rst, "Header" and "REPLY_ACK").
    public static let needReplyFlag: UInt32 = 1 << 3
}

/// vhost feature bits that belong to vhost-user rather than to the virtio device.
public enum VhostUserFeatures {
    /// VHOST_USER_F_PROTOCOL_FEATURES = bit 30, the reused UNUSED virtio bit that gates
    /// GET/SET_PROTOCOL_FEATURES (vhost-user.rst, "Communication").
    public static let protocolFeatures: UInt64 = 1 << 30
    /// VHOST_F_LOG_ALL = bit 26: the front-end can take dirty logging (vhost-user.rst, "Migration";
    /// value from linux/vhost_types.h).
    public static let logAll: UInt64 = 1 << 26
}
