import Packets

/// A port as the command line names it: `vhost:PATH[,client][,queues=N][,name=NAME]`,
/// `gen:dst=MAC,src=MAC,size=N[,count=N][,delay=MS][,name=NAME]`, `sink[:name=NAME]`.
public struct PortSpec: Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        case vhost(path: String, client: Bool, queuePairs: Int)
        case gen(destination: MACAddress, source: MACAddress, frameSize: Int, count: UInt64?, delayMilliseconds: Int)
        case sink
    }

    public var name: String?
    public var kind: Kind
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
        for item in items {
            if item.isEmpty { throw ParseError(text, "empty option") }
            if let eq = item.firstIndex(of: "=") {
                let key = String(item[..<eq])
                guard options[key] == nil else { throw ParseError(text, "option '\(key)' given twice") }
                options[key] = String(item[item.index(after: eq)...])
            } else if positional.isEmpty && options.isEmpty && flags.isEmpty && type == "vhost" {
                positional.append(item)
            } else {
                flags.insert(item)
            }
        }
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
            kind = .vhost(path: path, client: client, queuePairs: pairs)
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
            throw ParseError(text, "unknown port type '\(type)' (vhost, gen, sink)")
        }
        if let unknown = (Array(options.keys) + Array(flags)).sorted().first {
            throw ParseError(text, "unknown option '\(unknown)'")
        }
    }

    private static func mac(_ s: String, _ key: String, _ text: String) throws(ParseError) -> MACAddress {
        guard let m = MACAddress(s) else { throw ParseError(text, "\(key) '\(s)' is not a MAC address") }
        return m
    }
}
