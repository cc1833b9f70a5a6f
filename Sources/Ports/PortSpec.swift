import Packets
import Platform
import XDP

/// A port as the command line names it:
/// `vhost:PATH[,client][,queues=N][,owner=USER][,group=GROUP][,mode=0660]`,
/// `tap:NAME[,queues=N][,mtu=N]`, `packet:IFNAME[,queues=N]`,
/// `xdp:IFNAME[,queues=N][,mode=auto|native|generic][,zerocopy=auto|on|off]`,
/// `gen:dst=MAC,src=MAC,size=N[,count=N][,delay=MS]`,
/// `sink`; every kind also takes `name=NAME` and one of `vlan=N` (access) or
/// `trunk=N,M,A-B` (802.1Q trunk).
public struct PortSpec: Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        /// `permissions`: the server socket's owner, group and mode; always default for a client.
        case vhost(path: String, client: Bool, queuePairs: Int, permissions: SocketPermissions = SocketPermissions())
        /// A TAP interface, created if it does not exist; `mtu` nil leaves the MTU as it is.
        case tap(name: String, queues: Int, mtu: Int?)
        /// An existing NIC through AF_XDP; `queues` nil binds every receive queue it has.
        case xdp(interface: String, queues: Int?, mode: XDPAttachRequest, zeroCopy: XdpPort.ZeroCopyRequest)
        /// An existing interface through AF_PACKET sockets, one per queue (a fanout group when more than one).
        case packet(interface: String, queues: Int)
        case gen(destination: MACAddress, source: MACAddress, frameSize: Int, count: UInt64?, delayMilliseconds: Int)
        case sink
    }

    public var name: String?
    public var kind: Kind
    public var vlan: VLANMode
    public let text: String

    public var description: String { text }

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let description: String
        init(_ spec: String, _ why: String) { description = "port '\(spec)': \(why)" }
    }

    public init(parsing text: String) throws(ParseError) {
        self.text = text
        let (type, rest) = text.firstIndex(of: ":").map { (String(text[..<$0]), String(text[text.index(after: $0)...])) }
            ?? (text, "")
        let items = rest.isEmpty ? [] : rest.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        var options: [String: String] = [:]
        var flags: Set<String> = []
        var positional: [String] = []
        var trunk: [String] = []
        var lastKey = ""
        for item in items {
            if item.isEmpty { throw ParseError(text, "empty option") }
            // `trunk=10,20,30-40`: the list goes on for as long as items are VLAN ids or ranges.
            if lastKey == "trunk", item.first?.isNumber == true, !item.contains("=") {
                trunk.append(item)
                continue
            }
            if let eq = item.firstIndex(of: "=") {
                let key = String(item[..<eq])
                guard options[key] == nil else { throw ParseError(text, "option '\(key)' given twice") }
                options[key] = String(item[item.index(after: eq)...])
                lastKey = key
                if key == "trunk" { trunk.append(options[key]!) }
            } else if positional.isEmpty && options.isEmpty && flags.isEmpty
                        && ["vhost", "tap", "packet", "xdp"].contains(type) {
                positional.append(item)
                lastKey = ""
            } else {
                flags.insert(item)
                lastKey = ""
            }
        }
        vlan = try Self.vlanMode(access: options.removeValue(forKey: "vlan"),
                                 trunk: options.removeValue(forKey: "trunk").map { _ in trunk }, text)
        name = options.removeValue(forKey: "name")
        if let n = name, n.isEmpty || n.count > 32 || !n.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) {
            throw ParseError(text, "name '\(n)' must be 1-32 letters, digits, '-' or '_'")
        }
        switch type {
        case "vhost":
            guard let path = positional.first, !path.isEmpty else { throw ParseError(text, "vhost needs a socket path") }
            let client = flags.remove("client") != nil
            if flags.remove("server") != nil, client { throw ParseError(text, "both client and server") }
            var pairs = 1
            if let q = options.removeValue(forKey: "queues") {
                guard let v = Int(q), (1...128).contains(v) else { throw ParseError(text, "queues must be 1...128") }
                pairs = v
            }
            let permissions = SocketPermissions(owner: options.removeValue(forKey: "owner"),
                                                group: options.removeValue(forKey: "group"),
                                                mode: try options.removeValue(forKey: "mode").map { m throws(ParseError) in
                guard let mode = SocketPermissions.mode(parsing: m) else {
                    throw ParseError(text, "mode '\(m)' must be octal permission bits, 0000...0777 (e.g. 0660)")
                }
                return mode
            })
            for (key, value) in [("owner", permissions.owner), ("group", permissions.group)] where value?.isEmpty == true {
                throw ParseError(text, "\(key)= needs a user or group name (or a number)")
            }
            // In client mode the socket is the front-end's (QEMU's server=on): Ferry
            // creates no file whose permissions it could set.
            if client && !permissions.isDefault {
                throw ParseError(text, "owner=, group= and mode= set the permissions of the socket Ferry listens on; "
                                 + "with client, the front-end owns the socket (set them there)")
            }
            kind = .vhost(path: path, client: client, queuePairs: pairs, permissions: permissions)
        case "tap":
            let interface = try Self.interface(positional, type, text)
            let queues = try Self.queues(options.removeValue(forKey: "queues"), TapDevice.maxQueues, text)
            var mtu: Int?
            if let m = options.removeValue(forKey: "mtu") {
                guard let v = Int(m), TapPort.mtus.contains(v) else {
                    throw ParseError(text, "mtu must be \(TapPort.mtus.lowerBound)...\(TapPort.mtus.upperBound)")
                }
                mtu = v
            }
            kind = .tap(name: interface, queues: queues, mtu: mtu)
        case "packet":
            let interface = try Self.interface(positional, type, text)
            let queues = try Self.queues(options.removeValue(forKey: "queues"), PacketPort.maxQueues, text)
            kind = .packet(interface: interface, queues: queues)
        case "xdp":
            let interface = try Self.interface(positional, type, text)
            // Unlike the other kinds, no queues= binds every queue the NIC has.
            let queues = try options.removeValue(forKey: "queues").map { q throws(ParseError) in
                try Self.queues(q, XdpPort.maxQueues, text)
            }
            var mode = XDPAttachRequest.auto
            if let m = options.removeValue(forKey: "mode") {
                switch m {
                case "auto": mode = .auto
                case "native": mode = .native
                case "generic": mode = .generic
                default: throw ParseError(text, "mode must be auto, native or generic")
                }
            }
            var zeroCopy = XdpPort.ZeroCopyRequest.auto
            if let z = options.removeValue(forKey: "zerocopy") {
                guard let v = XdpPort.ZeroCopyRequest(rawValue: z) else {
                    throw ParseError(text, "zerocopy must be auto, on or off")
                }
                zeroCopy = v
            }
            kind = .xdp(interface: interface, queues: queues, mode: mode, zeroCopy: zeroCopy)
        case "gen":
            let dst = try Self.mac(options.removeValue(forKey: "dst") ?? "02:00:00:00:00:02", "dst", text)
            let src = try Self.mac(options.removeValue(forKey: "src") ?? "02:00:00:00:00:01", "src", text)
            var size = 64
            if let s = options.removeValue(forKey: "size") {
                guard let v = Int(s), GenPort.sizes.contains(v) else {
                    throw ParseError(text, "size must be \(GenPort.sizes.lowerBound)...\(GenPort.sizes.upperBound)")
                }
                size = v
            }
            var count: UInt64?
            if let c = options.removeValue(forKey: "count") {
                guard let v = UInt64(c) else { throw ParseError(text, "count must be a whole number") }
                count = v == 0 ? nil : v
            }
            var delay = 0
            if let d = options.removeValue(forKey: "delay") {
                guard let v = Int(d), (0...60_000).contains(v) else { throw ParseError(text, "delay must be 0...60000 ms") }
                delay = v
            }
            kind = .gen(destination: dst, source: src, frameSize: size, count: count, delayMilliseconds: delay)
        case "sink":
            kind = .sink
        default:
            throw ParseError(text, "unknown port type '\(type)' (vhost, tap, packet, xdp, gen, sink)")
        }
        if let unknown = (Array(options.keys) + Array(flags)).sorted().first {
            throw ParseError(text, "unknown option '\(unknown)'")
        }
    }

    private static func vlanMode(access: String?, trunk: [String]?, _ text: String) throws(ParseError) -> VLANMode {
        let range = VLANMode.validIDs
        func id(_ s: Substring) throws(ParseError) -> UInt16 {
            guard let v = UInt16(s), range.contains(v) else {
                throw ParseError(text, "VLAN id '\(s)' must be \(range.lowerBound)...\(range.upperBound)")
            }
            return v
        }
        switch (access, trunk) {
        case (nil, nil):
            return .access(VLANMode.defaultVLAN)
        case (let a?, nil):
            return .access(try id(Substring(a)))
        case (nil, let items?):
            var ids = Set<UInt16>()
            for item in items {
                if let dash = item.firstIndex(of: "-") {
                    let low = try id(item[..<dash])
                    let high = try id(item[item.index(after: dash)...])
                    guard low <= high else { throw ParseError(text, "VLAN range '\(item)' runs backwards") }
                    ids.formUnion(low...high)
                } else {
                    ids.insert(try id(Substring(item)))
                }
            }
            guard !ids.isEmpty else { throw ParseError(text, "trunk needs at least one VLAN id") }
            return .trunk(ids.sorted())
        case (_?, _?):
            throw ParseError(text, "a port is either access (vlan=) or trunk (trunk=), not both")
        }
    }

    /// The interface a tap or packet spec names first.
    private static func interface(_ positional: [String], _ type: String, _ text: String) throws(ParseError) -> String {
        guard let interface = positional.first, !interface.isEmpty else {
            throw ParseError(text, "\(type) needs an interface name")
        }
        guard isInterfaceName(interface) else {
            throw ParseError(text, "interface name '\(interface)' must be 1-\(TapDevice.maxNameLength) letters, "
                             + "digits, '-', '_' or '.' (and not '.' or '..')")
        }
        return interface
    }

    /// `queues=N`, 1 when not given.
    private static func queues(_ value: String?, _ most: Int, _ text: String) throws(ParseError) -> Int {
        guard let value else { return 1 }
        guard let v = Int(value), (1...most).contains(v) else { throw ParseError(text, "queues must be 1...\(most)") }
        return v
    }

    /// What the kernel takes as an interface name (dev_valid_name: at most
    /// IFNAMSIZ - 1 bytes, no '/', ':' or white space, not '.' or '..'), narrowed
    /// to characters that need no quoting in a shell or a log line. No '%':
    /// a "tap%d" template would leave the name to the kernel.
    private static func isInterfaceName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= TapDevice.maxNameLength, name != ".", name != ".." else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }

    private static func mac(_ s: String, _ key: String, _ text: String) throws(ParseError) -> MACAddress {
        guard let m = MACAddress(s) else { throw ParseError(text, "\(key) '\(s)' is not a MAC address") }
        return m
    }
}
