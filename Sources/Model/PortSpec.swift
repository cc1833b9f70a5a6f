/// A port as the command line names it:
/// `vhost:PATH[,client][,queues=N][,owner=USER][,group=GROUP][,mode=0660][,offloads=on|csum|off]`,
/// `tap:NAME[,queues=N][,mtu=N][,offloads=on|csum|off]`, `packet:IFNAME[,queues=N][,offloads=on|csum|off]`,
/// `xdp:IFNAME[,queues=N][,mode=auto|native|generic][,zerocopy=auto|on|off]`,
/// `gen:dst=MAC,src=MAC,size=N|N/M/...|imix[,count=N][,delay=MS][,rate=R][,burst=N][,flows=N][,tag=N][,stamp=on|off][,full=drop|wait]`,
/// `vxlan:VNI,local=IP[,remote=IP[+IP...]][,port=4789][,evpn=VXLANDEV,evpn_port=BRIDGEPORT][,via=PORTNAME]`,
/// `virtio-user:PATH[,server][,queue_size=N]`, `sink`; every kind also takes `name=NAME`, one of `vlan=N` (access) or
/// `trunk=N,M,A-B[,native=N]` (802.1Q trunk, `native` its untagged VLAN), and
/// `group_fwd_mask=0xNNNN` (`GroupForwardMask`).
/// A config file gives the same options by key (`init(type:options:text:)`), the text
/// form is parsed in PortSpec+Text.swift.
public struct PortSpec: Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        /// `permissions`: the server socket's owner, group and mode; always default for a client.
        case vhost(path: String, client: Bool, queuePairs: Int, permissions: SocketPermissions = SocketPermissions())
        /// A TAP interface, created if it does not exist; `mtu` nil leaves the MTU as it is.
        case tap(name: String, queues: Int, mtu: Int?)
        /// An existing NIC through AF_XDP; `queues` nil binds every receive queue it has.
        case xdp(interface: String, queues: Int?, mode: XDPAttachRequest, zeroCopy: XDPZeroCopyRequest)
        /// An existing interface through AF_PACKET sockets, one per queue (a fanout group when more than one).
        case packet(interface: String, queues: Int)
        case gen(GeneratorSpec)
        case sink
        /// One VXLAN network over the underlay from `local`; `remotes` its flood list (empty: any sender).
        case vxlan(vni: UInt32, local: InternetAddress, remotes: [InternetAddress], udpPort: UInt16)
        /// Ferry as the guest's driver on another back-end's vhost-user socket, which it
        /// connects to (`server`: listens on), one queue pair of `queueSize` entries.
        case virtioUser(path: String, server: Bool, queueSize: Int)
    }

    /// What a vhost, TAP or packet port negotiates or is given: checksum and segmentation
    /// offloads (`on`, the default), checksums only (`csum`), or none (`off`), for
    /// debugging and for measuring what the offloads are worth.
    public enum Offloads: String, Equatable, Sendable, CaseIterable {
        case on, csum, off
    }

    public var name: String?
    public var kind: Kind
    public var vlan: VLANMode
    public var offloads: Offloads = .on
    /// The link-local group addresses forwarded when a frame to one comes in on this port.
    public var groupForwardMask: GroupForwardMask = .none
    /// A vxlan port whose VTEPs and remote MACs come from BGP EVPN through the kernel devices named.
    public var evpn: EvpnDevices? = nil
    /// A vxlan port whose datagrams leave through this `xdp:` port (its name): the
    /// AF_XDP fast path (`via=`), outer Ethernet and IP headers built by Ferry.
    public var underlay: String? = nil
    public let text: String

    public var description: String { text }

    /// The type word of the spec: vhost, tap, packet, xdp, gen or sink.
    public var kindName: String {
        switch kind {
        case .vhost: "vhost"
        case .tap: "tap"
        case .packet: "packet"
        case .xdp: "xdp"
        case .gen: "gen"
        case .sink: "sink"
        case .vxlan: "vxlan"
        case .virtioUser: "virtio-user"
        }
    }

    /// Same port, however it was written: the text differs between `--port` and a config
    /// file, and between two spellings of one trunk.
    public func describesSamePort(as other: PortSpec) -> Bool {
        name == other.name && kind == other.kind && vlan == other.vlan && offloads == other.offloads
            && groupForwardMask == other.groupForwardMask && evpn == other.evpn
            && underlay == other.underlay
    }

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        /// The option at fault (`queues`, `path`, `type`...), so a config file can point at
        /// its line; nil when the spec as a whole is wrong.
        public let key: String?
        /// What is wrong, without the spec: "queues must be 1...128".
        public let problem: String
        public let description: String
        init(_ spec: String, _ why: String, key: String? = nil) {
            self.key = key
            problem = why
            description = "port '\(spec)': \(why)"
        }
    }

    /// Every kind of port, in the order help texts list them.
    public static let types = ["vhost", "tap", "packet", "xdp", "gen", "sink", "vxlan", "virtio-user"]
    /// The options every kind takes.
    public static let commonKeys = ["name", "vlan", "trunk", "native", "group_fwd_mask"]
    /// The options of each kind besides the common ones; the first of vhost, tap,
    /// packet and xdp is what the text form gives first, without a key.
    public static let kindKeys: [String: [String]] = [
        "vhost": ["path", "client", "queues", "owner", "group", "mode", "offloads"],
        "tap": ["interface", "queues", "mtu", "offloads"],
        "packet": ["interface", "queues", "offloads"],
        "xdp": ["interface", "queues", "mode", "zerocopy"],
        "gen": ["dst", "src", "size", "count", "delay", "rate", "burst", "flows", "tag", "stamp", "full"],
        "sink": [],
        "vxlan": ["vni", "local", "remote", "port", "evpn", "evpn_port", "via"],
        "virtio-user": ["path", "server", "queue_size"],
    ]
    /// Options whose value is true or false; the text form writes them as a bare word.
    public static let booleanKeys: Set<String> = ["client", "server"]

    /// Every option a kind takes, its own first: nil for an unknown kind.
    public static func keys(of type: String) -> [String]? {
        kindKeys[type].map { $0 + commonKeys }
    }

    /// A port from its type and its options by key, e.g. `"vhost"`, `["path": "/run/vm0.sock",
    /// "queues": "2"]`: what the text form and the config file both come down to, so that
    /// the two accept exactly the same options. Boolean options are `"true"` or `"false"`,
    /// a trunk is `"10,20-30"`. `text` is how the port is shown (logs, `ferry ctl show`).
    public init(type: String, options given: [String: String], text: String) throws(ParseError) {
        self.text = text
        var options = given
        func take(_ key: String) -> String? { options.removeValue(forKey: key) }
        func fail(_ key: String?, _ why: String) -> ParseError { ParseError(text, why, key: key) }
        vlan = try Self.vlanMode(access: take("vlan"), trunk: take("trunk"), native: take("native"), text)
        name = take("name")
        if let n = name, n.isEmpty || n.count > 32 || !n.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) {
            throw fail("name", "name '\(n)' must be 1-32 letters, digits, '-' or '_'")
        }
        if let mask = take("group_fwd_mask") {
            do throws(GroupForwardMask.Invalid) { groupForwardMask = try GroupForwardMask(parsing: mask) } catch {
                throw fail("group_fwd_mask", error.description)
            }
        }
        switch type {
        case "vhost":
            guard let path = take("path"), !path.isEmpty else { throw fail("path", "vhost needs a socket path") }
            var client = false
            if let c = take("client") {
                guard let v = Bool(c) else { throw fail("client", "client must be true or false") }
                client = v
            }
            var pairs = 1
            if let q = take("queues") {
                guard let v = Int(q), (1...128).contains(v) else { throw fail("queues", "queues must be 1...128") }
                pairs = v
            }
            let permissions: SocketPermissions
            do throws(SocketPermissions.Invalid) {
                permissions = try SocketPermissions(owner: take("owner"), group: take("group"), modeText: take("mode"))
            } catch {
                throw fail(error.key, error.problem)
            }
            // In client mode the socket is the front-end's (QEMU's server=on): Ferry
            // creates no file whose permissions it could set.
            if client && !permissions.isDefault {
                throw fail(permissions.owner != nil ? "owner" : permissions.group != nil ? "group" : "mode",
                           "owner, group and mode set the permissions of the socket Ferry listens on; "
                           + "with client, the front-end owns the socket (set them there)")
            }
            kind = .vhost(path: path, client: client, queuePairs: pairs, permissions: permissions)
            offloads = try Self.offloads(take("offloads"), text)
        case "tap":
            let interface = try Self.interface(take("interface"), type, text)
            let queues = try Self.queues(take("queues"), PortLimits.tapQueues, text)
            var mtu: Int?
            if let m = take("mtu") {
                guard let v = Int(m), PortLimits.tapMTUs.contains(v) else {
                    throw fail("mtu", "mtu must be \(PortLimits.tapMTUs.lowerBound)...\(PortLimits.tapMTUs.upperBound)")
                }
                mtu = v
            }
            kind = .tap(name: interface, queues: queues, mtu: mtu)
            offloads = try Self.offloads(take("offloads"), text)
        case "packet":
            let interface = try Self.interface(take("interface"), type, text)
            let queues = try Self.queues(take("queues"), PortLimits.packetQueues, text)
            kind = .packet(interface: interface, queues: queues)
            offloads = try Self.offloads(take("offloads"), text)
        case "xdp":
            let interface = try Self.interface(take("interface"), type, text)
            // Unlike the other kinds, no queues= binds every queue the NIC has.
            let queues = try take("queues").map { q throws(ParseError) in
                try Self.queues(q, PortLimits.xdpQueues, text)
            }
            var mode = XDPAttachRequest.auto
            if let m = take("mode") {
                switch m {
                case "auto": mode = .auto
                case "native": mode = .native
                case "generic": mode = .generic
                default: throw fail("mode", "mode must be auto, native or generic")
                }
            }
            var zeroCopy = XDPZeroCopyRequest.auto
            if let z = take("zerocopy") {
                guard let v = XDPZeroCopyRequest(rawValue: z) else {
                    throw fail("zerocopy", "zerocopy must be auto, on or off")
                }
                zeroCopy = v
            }
            kind = .xdp(interface: interface, queues: queues, mode: mode, zeroCopy: zeroCopy)
        case "gen":
            kind = .gen(try Self.generator(take, text))
        case "sink":
            kind = .sink
        case "virtio-user":
            guard let path = take("path"), !path.isEmpty else { throw fail("path", "virtio-user needs a socket path") }
            var server = false
            if let s = take("server") {
                guard let v = Bool(s) else { throw fail("server", "server must be true or false") }
                server = v
            }
            var size = PortLimits.virtioUserDefaultQueueSize
            if let q = take("queue_size") {
                let sizes = PortLimits.virtioUserQueueSizes
                guard let v = Int(q), sizes.contains(v), v & (v - 1) == 0 else {
                    throw fail("queue_size", "queue_size must be a power of two in \(sizes.lowerBound)...\(sizes.upperBound)")
                }
                size = v
            }
            kind = .virtioUser(path: path, server: server, queueSize: size)
        case "vxlan":
            let remote = take("remote")
            kind = try Self.vxlanKind(vni: take("vni"), local: take("local"), remote: remote, port: take("port"),
                                      text)
            evpn = try Self.evpnDevices(vxlanDevice: take("evpn"), bridgePort: take("evpn_port"), remote: remote,
                                        vlan: vlan, text)
            underlay = try Self.underlayPort(take("via"), text)
        default:
            throw fail("type", "unknown port type '\(type)' (\(Self.types.joined(separator: ", ")))")
        }
        if let unknown = options.keys.sorted().first {
            throw fail(unknown, "unknown option '\(unknown)'")
        }
    }

    /// The text form of a port given by key: `vhost:PATH,client,queues=2,name=vm0`, options in
    /// the order `kindKeys` lists them. Shown for ports that came from a config file.
    public static func text(type: String, options: [String: String]) -> String {
        let own = kindKeys[type] ?? []
        var items: [String] = []
        for key in own + ["vlan", "trunk", "native", "group_fwd_mask", "name"] {
            guard let value = options[key] else { continue }
            // trunk's list is written with single commas: its items run on (see init(parsing:)).
            let item = key == "trunk" ? value : escaped(value)
            if key == own.first && type != "gen" && !value.contains("=") {
                items.append(item)
            } else if booleanKeys.contains(key) {
                if value == "true" { items.append(key) }
            } else {
                items.append("\(key)=\(item)")
            }
        }
        return items.isEmpty ? type : "\(type):" + items.joined(separator: ",")
    }


    private static func vlanMode(access: String?, trunk: String?, native: String?,
                                 _ text: String) throws(ParseError) -> VLANMode {
        let range = VLANMode.validIDs
        func id(_ s: Substring, _ key: String) throws(ParseError) -> UInt16 {
            guard let v = UInt16(s), range.contains(v) else {
                throw ParseError(text, "VLAN id '\(s)' must be \(range.lowerBound)...\(range.upperBound)", key: key)
            }
            return v
        }
        if native != nil && trunk == nil {
            throw ParseError(text, "native= names a trunk's untagged VLAN and needs trunk= "
                             + "(an access port's vlan= is untagged already)", key: "native")
        }
        switch (access, trunk) {
        case (nil, nil):
            return .access(VLANMode.defaultVLAN)
        case (let a?, nil):
            return .access(try id(Substring(a), "vlan"))
        case (nil, let list?):
            var ids = Set<UInt16>()
            for item in list.split(separator: ",", omittingEmptySubsequences: false) {
                if let dash = item.firstIndex(of: "-") {
                    let low = try id(item[..<dash], "trunk")
                    let high = try id(item[item.index(after: dash)...], "trunk")
                    guard low <= high else { throw ParseError(text, "VLAN range '\(item)' runs backwards", key: "trunk") }
                    ids.formUnion(low...high)
                } else {
                    ids.insert(try id(item, "trunk"))
                }
            }
            guard !ids.isEmpty else { throw ParseError(text, "trunk needs at least one VLAN id", key: "trunk") }
            let list = ids.sorted()
            guard let native else { return .trunk(list) }
            let untagged = try id(Substring(native), "native")
            // As a Linux bridge's pvid must be one of the port's VLANs: a native VLAN
            // the trunk does not carry would take untagged frames into a VLAN it is not in.
            guard ids.contains(untagged) else {
                throw ParseError(text, "native VLAN \(untagged) must be one of the trunk's VLANs "
                                 + "(\(list.map(String.init).joined(separator: ",")))", key: "native")
            }
            return .trunk(list, native: untagged)
        case (_?, _?):
            throw ParseError(text, "a port is either access (vlan=) or trunk (trunk=), not both", key: "trunk")
        }
    }

    /// The interface a tap, packet or xdp spec names first.
    private static func interface(_ given: String?, _ type: String, _ text: String) throws(ParseError) -> String {
        guard let interface = given, !interface.isEmpty else {
            throw ParseError(text, "\(type) needs an interface name", key: "interface")
        }
        guard isInterfaceName(interface) else {
            throw ParseError(text, "interface name '\(interface)' must be 1-\(PortLimits.interfaceNameLength) letters, "
                             + "digits, '-', '_' or '.' (and not '.' or '..')", key: "interface")
        }
        return interface
    }

    /// `offloads=on|csum|off`, on when not given.
    private static func offloads(_ value: String?, _ text: String) throws(ParseError) -> Offloads {
        guard let value else { return .on }
        guard let level = Offloads(rawValue: value) else {
            throw ParseError(text, "offloads must be on, csum or off", key: "offloads")
        }
        return level
    }

    /// `queues=N`, 1 when not given.
    private static func queues(_ value: String?, _ most: Int, _ text: String) throws(ParseError) -> Int {
        guard let value else { return 1 }
        guard let v = Int(value), (1...most).contains(v) else {
            throw ParseError(text, "queues must be 1...\(most)", key: "queues")
        }
        return v
    }

    /// What the kernel takes as an interface name (dev_valid_name: at most
    /// IFNAMSIZ - 1 bytes, no '/', ':' or white space, not '.' or '..'), narrowed
    /// to characters that need no quoting in a shell or a log line. No '%':
    /// a "tap%d" template would leave the name to the kernel.
    private static func isInterfaceName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= PortLimits.interfaceNameLength, name != ".", name != ".." else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }

    static func mac(_ s: String, _ key: String, _ text: String) throws(ParseError) -> MACAddress {
        guard let m = MACAddress(s) else { throw ParseError(text, "\(key) '\(s)' is not a MAC address", key: key) }
        return m
    }
}
