import Model

extension StaticFDBEntry {
    /// `MAC,port=NAME[,vlan=N]`, as `ferry run --fdb` takes an entry: the keys of the
    /// file's `fdb:` items, the address first. Whether the port exists and carries the VLAN is
    /// the whole config's to say (`resolved(on:)`), as for an entry of the file.
    public init(parsing text: String) throws(Refusal) {
        func refused(_ why: String) -> Refusal { Refusal(description: "--fdb \(text): \(why)") }
        let items = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard let mac = MACAddress(items[0]) else { throw refused("'\(items[0])' is not a MAC address") }
        if let problem = Self.problem(with: mac) { throw refused(problem) }
        var port: String?
        var vlan: UInt16?
        for item in items.dropFirst() {
            guard let eq = item.firstIndex(of: "=") else { throw refused("'\(item)' is not KEY=VALUE (port=, vlan=)") }
            let key = item[..<eq]
            let value = String(item[item.index(after: eq)...])
            switch key {
            case "port" where port == nil:
                guard !value.isEmpty else { throw refused("port= needs a port's name") }
                port = value
            case "vlan" where vlan == nil:
                guard let id = UInt16(value), VLANMode.validIDs.contains(id) else {
                    throw refused("VLAN id '\(value)' must be \(VLANMode.validIDs.lowerBound)...\(VLANMode.validIDs.upperBound)")
                }
                vlan = id
            case "port", "vlan":
                throw refused("\(key)= given twice")
            default:
                throw refused("unknown key '\(key)' (port, vlan)")
            }
        }
        guard let port else { throw refused("needs port=NAME") }
        self.init(mac: mac, port: port, vlan: vlan)
    }
}
