extension PortSpec {
    /// A port as `--port` gives it: `TYPE[:ITEM[,ITEM]...]`, where the first item of
    /// vhost and virtio-user (the socket path) and tap, packet, xdp (the interface) needs no key, a boolean
    /// option is a bare word (`client`; `server` is `client=false`) and `trunk=` runs on
    /// over the items that are VLAN ids or ranges. A comma inside a value is written twice
    /// (`vhost:/run/a,,b.sock`), as QEMU's `-chardev` options do. Everything else is the keyed
    /// initializer's.
    public init(parsing text: String) throws(ParseError) {
        let (type, rest) = text.firstIndex(of: ":").map { (String(text[..<$0]), String(text[text.index(after: $0)...])) }
            ?? (text, "")
        let items = Self.items(rest)
        let positionalKey = ["vhost", "tap", "packet", "xdp", "vxlan", "virtio-user"].contains(type) ? Self.kindKeys[type]?.first : nil
        var options: [String: String] = [:]
        var trunk: [String] = []
        var lastKey = ""
        func set(_ key: String, _ value: String) throws(ParseError) {
            guard options[key] == nil else { throw ParseError(text, "option '\(key)' given twice", key: key) }
            options[key] = value
        }
        for (position, item) in items.enumerated() {
            if item.isEmpty { throw ParseError(text, "empty option") }
            // `trunk=10,20,30-40`: the list goes on for as long as items are VLAN ids or ranges.
            if lastKey == "trunk", item.first?.isNumber == true, !item.contains("=") {
                trunk.append(item)
                continue
            }
            lastKey = ""
            if let eq = item.firstIndex(of: "=") {
                let key = String(item[..<eq])
                try set(key, String(item[item.index(after: eq)...]))
                lastKey = key
                if key == "trunk" { trunk.append(options[key]!) }
            } else if position == 0, let positionalKey {
                try set(positionalKey, item)
            } else if item == "server" || Self.booleanKeys.contains(item) {
                // vhost's `server` is `client=false`; virtio-user's is a flag of its own.
                let (key, value) = item == "server" && type != "virtio-user" ? ("client", "false") : (item, "true")
                if key == "client", let earlier = options[key], earlier != value {
                    throw ParseError(text, "both client and server", key: key)
                }
                try set(key, value)
            } else {
                // A bare word that is no flag: the keyed initializer names it as unknown
                // unless it is an option of this kind, whose value "" it then refuses.
                try set(item, "")
            }
        }
        if options["trunk"] != nil { options["trunk"] = trunk.joined(separator: ",") }
        try self.init(type: type, options: options, text: text)
    }

    /// `rest` cut at single commas; `,,` is a comma inside an item.
    static func items(_ rest: String) -> [String] {
        guard !rest.isEmpty else { return [] }
        var items: [String] = []
        var item = ""
        var index = rest.startIndex
        while index < rest.endIndex {
            let character = rest[index]
            index = rest.index(after: index)
            guard character == "," else {
                item.append(character)
                continue
            }
            if index < rest.endIndex, rest[index] == "," {
                item.append(",")
                index = rest.index(after: index)
            } else {
                items.append(item)
                item = ""
            }
        }
        items.append(item)
        return items
    }

    /// `value` as an item of the text form: its commas doubled.
    static func escaped(_ value: String) -> String {
        value.split(separator: ",", omittingEmptySubsequences: false).joined(separator: ",,")
    }
}
