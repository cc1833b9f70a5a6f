import Glibc
import Model

/// One entry of the kernel's bridge forwarding database as rtnetlink carries
/// it (RTM_NEWNEIGH / RTM_DELNEIGH, family AF_BRIDGE: `struct ndmsg` and its
/// NDA_* attributes, include/uapi/linux/neighbour.h): a MAC address on a
/// bridge port or on a vxlan device, and for a vxlan device's own table the
/// remote VTEP it lives behind (NDA_DST). The all-zero MAC with a VTEP is a
/// flood-list entry (`bridge fdb append 00:00:00:00:00:00 ... dst VTEP`).
///
/// Everything read from the kernel is checked here: a message too short for
/// what it claims, an attribute that overruns it or has the wrong size for
/// its type is refused with its own reason (`NetlinkInputError`).
public struct BridgeNeighbour: Equatable, Sendable {
    public enum Change: Equatable, Sendable {
        case added, removed
    }

    public var change: Change
    public var interfaceIndex: Int32
    /// The MAC address, first byte most significant (as `FDBKey` takes it).
    public var mac: UInt64
    /// NDA_DST: the remote VTEP (a vxlan device's entries).
    public var destination: InternetAddress?
    /// NDA_VNI, when it differs from the device's own.
    public var vni: UInt32?
    /// NDA_VLAN: the bridge VLAN, on a VLAN-aware bridge.
    public var vlan: UInt16?
    /// ndm_state (NUD_*) and ndm_flags (NTF_*).
    public var state: UInt16
    public var flags: UInt8

    public init(change: Change, interfaceIndex: Int32, mac: UInt64, destination: InternetAddress? = nil,
                vni: UInt32? = nil, vlan: UInt16? = nil, state: UInt16, flags: UInt8) {
        self.change = change
        self.interfaceIndex = interfaceIndex
        self.mac = mac
        self.destination = destination
        self.vni = vni
        self.vlan = vlan
        self.state = state
        self.flags = flags
    }

    /// The kernel's own table of a device (NTF_SELF: a vxlan device's, with its VTEPs),
    /// rather than the bridge's above it (NTF_MASTER).
    public var isDeviceOwn: Bool { flags & RTNetlink.ntfSelf != 0 }
    /// All-zero MAC: a default destination, which a vxlan device floods to.
    public var isFloodEntry: Bool { mac == 0 }
}

/// What was wrong with a message from the kernel.
public enum NetlinkInputError: Error, Equatable, CustomStringConvertible {
    case truncatedHeader(Int)
    case badMessageLength(UInt32, available: Int)
    case truncatedAttribute(type: UInt16, length: Int)
    case badAttributeSize(type: UInt16, length: Int)
    case noAddress
    case kernelError(Int32)

    public var description: String {
        switch self {
        case .truncatedHeader(let n): "message of \(n) bytes, shorter than its headers"
        case .badMessageLength(let n, let available): "message claims \(n) bytes, \(available) arrived"
        case .truncatedAttribute(let type, let length): "attribute \(type) of \(length) bytes overruns the message"
        case .badAttributeSize(let type, let length): "attribute \(type) has \(length) bytes, not its type's size"
        case .noAddress: "no NDA_LLADDR (MAC address)"
        case .kernelError(let code): "the kernel answered error \(code) (\(String(cString: strerror(code))))"
        }
    }
}

/// rtnetlink's numbers (include/uapi/linux/{netlink,rtnetlink,neighbour}.h).
public enum RTNetlink {
    public static let newNeighbour: UInt16 = 28
    public static let deleteNeighbour: UInt16 = 29
    public static let getNeighbour: UInt16 = 30
    static let messageError: UInt16 = 2
    static let messageDone: UInt16 = 3
    /// RTMGRP_NEIGH: the group neighbour changes are announced to.
    static let neighbourGroup: UInt32 = 4
    static let request: UInt16 = 0x1
    static let acknowledge: UInt16 = 0x4
    static let replace: UInt16 = 0x100
    static let create: UInt16 = 0x400
    static let dump: UInt16 = 0x300
    static let familyBridge: UInt8 = 7
    static let headerSize = 16
    static let ndmsgSize = 12
    static let attributeLLAddress: UInt16 = 2
    static let attributeDestination: UInt16 = 1
    static let attributeVLAN: UInt16 = 5
    static let attributeVNI: UInt16 = 7
    public static let nudReachable: UInt16 = 0x02
    public static let nudNoARP: UInt16 = 0x40
    public static let nudPermanent: UInt16 = 0x80
    public static let ntfSelf: UInt8 = 0x02
    public static let ntfMaster: UInt8 = 0x04
    public static let ntfExternallyLearned: UInt8 = 0x10

    static func align(_ n: Int) -> Int { (n + 3) & ~3 }

    /// One message of a datagram: its type, flags, sequence and payload.
    public struct Message {
        public var type: UInt16
        public var flags: UInt16
        public var sequence: UInt32
        public var payload: ArraySlice<UInt8>
    }

    /// The messages in `bytes` (one datagram from a netlink socket), each
    /// length checked against what arrived.
    public static func messages(in bytes: ArraySlice<UInt8>) -> Result<[Message], NetlinkInputError> {
        var list: [Message] = []
        var offset = bytes.startIndex
        while bytes.endIndex - offset >= headerSize {
            let length = Int(read32(bytes, offset))
            guard length >= headerSize, length <= bytes.endIndex - offset else {
                return .failure(.badMessageLength(UInt32(truncatingIfNeeded: length), available: bytes.endIndex - offset))
            }
            list.append(Message(type: read16(bytes, offset + 4), flags: read16(bytes, offset + 6),
                                sequence: read32(bytes, offset + 8),
                                payload: bytes[(offset + headerSize)..<(offset + length)]))
            offset += align(length)
        }
        // What is left is shorter than a header: alignment padding at most.
        let rest = bytes.endIndex - offset
        if rest > 0 && (list.isEmpty || rest > 3) { return .failure(.truncatedHeader(rest)) }
        return .success(list)
    }

    /// The errno of an NLMSG_ERROR's payload (0: an acknowledgement).
    static func errorCode(_ payload: ArraySlice<UInt8>) -> Result<Int32, NetlinkInputError> {
        guard payload.count >= 4 else { return .failure(.truncatedHeader(payload.count)) }
        return .success(-Int32(bitPattern: read32(payload, payload.startIndex)))
    }

    static func read16(_ b: ArraySlice<UInt8>, _ i: Int) -> UInt16 { UInt16(b[i]) | UInt16(b[i + 1]) << 8 }
    static func read32(_ b: ArraySlice<UInt8>, _ i: Int) -> UInt32 {
        UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }
}

extension BridgeNeighbour {
    /// The entry a neighbour message describes; nil for one of another
    /// family (ARP and NDP entries share the group) or another message type.
    public static func parse(_ message: RTNetlink.Message) -> Result<BridgeNeighbour?, NetlinkInputError> {
        let change: Change
        switch message.type {
        case RTNetlink.newNeighbour: change = .added
        case RTNetlink.deleteNeighbour: change = .removed
        default: return .success(nil)
        }
        let p = message.payload
        guard p.count >= RTNetlink.ndmsgSize else { return .failure(.truncatedHeader(p.count)) }
        let s = p.startIndex
        guard p[s] == RTNetlink.familyBridge else { return .success(nil) }
        var entry = BridgeNeighbour(change: change, interfaceIndex: Int32(bitPattern: RTNetlink.read32(p, s + 4)),
                                    mac: 0, state: RTNetlink.read16(p, s + 8), flags: p[s + 10])
        var hasMAC = false
        var offset = s + RTNetlink.ndmsgSize
        while p.endIndex - offset >= 4 {
            let length = Int(RTNetlink.read16(p, offset))
            // The top bits are NLA_F_NESTED / NLA_F_NET_BYTEORDER.
            let type = RTNetlink.read16(p, offset + 2) & 0x3FFF
            guard length >= 4, length <= p.endIndex - offset else {
                return .failure(.truncatedAttribute(type: type, length: length))
            }
            let value = p[(offset + 4)..<(offset + length)]
            switch type {
            case RTNetlink.attributeLLAddress:
                guard value.count == 6 else { return .failure(.badAttributeSize(type: type, length: value.count)) }
                entry.mac = value.reduce(0) { $0 << 8 | UInt64($1) }
                hasMAC = true
            case RTNetlink.attributeDestination:
                switch value.count {
                case 4:
                    let raw = UInt32(value[value.startIndex]) | UInt32(value[value.startIndex + 1]) << 8
                        | UInt32(value[value.startIndex + 2]) << 16 | UInt32(value[value.startIndex + 3]) << 24
                    entry.destination = InternetAddress(ipv4NetworkOrder: raw)
                case 16:
                    let bytes = Array(value)
                    entry.destination = InternetAddress(ipv6High: bytes[0..<8].reduce(0) { $0 << 8 | UInt64($1) },
                                                        low: bytes[8..<16].reduce(0) { $0 << 8 | UInt64($1) })
                default:
                    return .failure(.badAttributeSize(type: type, length: value.count))
                }
            case RTNetlink.attributeVNI:
                guard value.count == 4 else { return .failure(.badAttributeSize(type: type, length: value.count)) }
                entry.vni = RTNetlink.read32(value, value.startIndex)
            case RTNetlink.attributeVLAN:
                guard value.count == 2 else { return .failure(.badAttributeSize(type: type, length: value.count)) }
                entry.vlan = RTNetlink.read16(value, value.startIndex)
            default:
                break
            }
            offset += RTNetlink.align(length)
        }
        guard hasMAC else { return .failure(.noAddress) }
        return .success(entry)
    }

    /// The request that adds (replacing) or removes this entry, without a VTEP:
    /// a bridge port's MAC as `bridge fdb add|del MAC dev PORT master static` writes it.
    public func request(sequence: UInt32) -> [UInt8] {
        let add = change == .added
        var bytes: [UInt8] = []
        let length = RTNetlink.headerSize + RTNetlink.ndmsgSize + 12
        func put16(_ v: UInt16) { bytes += [UInt8(v & 0xFF), UInt8(v >> 8)] }
        func put32(_ v: UInt32) { put16(UInt16(v & 0xFFFF)); put16(UInt16(v >> 16)) }
        put32(UInt32(length))
        put16(add ? RTNetlink.newNeighbour : RTNetlink.deleteNeighbour)
        put16(RTNetlink.request | RTNetlink.acknowledge | (add ? RTNetlink.create | RTNetlink.replace : 0))
        put32(sequence)
        put32(0)
        bytes += [RTNetlink.familyBridge, 0, 0, 0]
        put32(UInt32(bitPattern: interfaceIndex))
        put16(state)
        bytes += [flags, 0]
        put16(10)
        put16(RTNetlink.attributeLLAddress)
        for shift in stride(from: 40, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: mac >> UInt64(shift))) }
        bytes += [0, 0]
        return bytes
    }

    /// A dump of every bridge FDB entry of every device.
    public static func dumpRequest(sequence: UInt32) -> [UInt8] {
        var bytes: [UInt8] = []
        func put16(_ v: UInt16) { bytes += [UInt8(v & 0xFF), UInt8(v >> 8)] }
        func put32(_ v: UInt32) { put16(UInt16(v & 0xFFFF)); put16(UInt16(v >> 16)) }
        put32(UInt32(RTNetlink.headerSize + RTNetlink.ndmsgSize))
        put16(RTNetlink.getNeighbour)
        put16(RTNetlink.request | RTNetlink.dump)
        put32(sequence)
        put32(0)
        bytes += [RTNetlink.familyBridge] + [UInt8](repeating: 0, count: RTNetlink.ndmsgSize - 1)
        return bytes
    }
}
