// The options of `gen:` (docs/CONFIG.md), read into a `GeneratorSpec`.
extension PortSpec {
    static func generator(_ take: (String) -> String?, _ text: String) throws(ParseError) -> GeneratorSpec {
        func fail(_ key: String, _ why: String) -> ParseError { ParseError(text, why, key: key) }
        var spec = GeneratorSpec()
        spec.destination = try mac(take("dst") ?? "02:00:00:00:00:02", "dst", text)
        spec.source = try mac(take("src") ?? "02:00:00:00:00:01", "src", text)
        if let c = take("count") {
            guard let v = UInt64(c) else { throw fail("count", "count must be a whole number") }
            spec.count = v == 0 ? nil : v
        }
        if let d = take("delay") {
            guard let v = Int(d), (0...60_000).contains(v) else { throw fail("delay", "delay must be 0...60000 ms") }
            spec.delayMilliseconds = v
        }
        if let r = take("rate") {
            guard let rate = Self.rate(r) else {
                throw fail("rate", "rate must be unlimited or a number with pps or bps (k, M, G allowed: 1Mpps, 2.5Gbps)")
            }
            spec.rate = rate
        }
        if let b = take("burst") {
            guard let v = Int(b), (1...GeneratorSpec.burstLimit).contains(v) else {
                throw fail("burst", "burst must be 1...\(GeneratorSpec.burstLimit)")
            }
            spec.burst = v
        }
        if let f = take("flows") {
            guard let v = Int(f), (1...GeneratorSpec.flowLimit).contains(v) else {
                throw fail("flows", "flows must be 1...\(GeneratorSpec.flowLimit)")
            }
            spec.flows = v
        }
        if let t = take("tag") {
            guard let v = UInt16(t), VLANMode.validIDs.contains(v) else {
                throw fail("tag", "tag must be a VLAN id, \(VLANMode.validIDs.lowerBound)...\(VLANMode.validIDs.upperBound)")
            }
            spec.tag = v
        }
        if let s = take("stamp") {
            switch s {
            case "on": spec.stamped = true
            case "off": spec.stamped = false
            default: throw fail("stamp", "stamp must be on or off")
            }
        }
        if let f = take("full") {
            switch f {
            case "drop": spec.waitsWhenFull = false
            case "wait": spec.waitsWhenFull = true
            default: throw fail("full", "full must be drop or wait")
            }
        }
        if let s = take("size") {
            let range = GeneratorSpec.sizes
            let sizeProblem = "size must be \(range.lowerBound)...\(range.upperBound), a list of them (64/570/1518) or imix"
            if s == "imix" {
                spec.sizes = .imix
            } else {
                let items = s.split(separator: "/", omittingEmptySubsequences: false)
                var sizes: [Int] = []
                for item in items {
                    guard let v = Int(item), range.contains(v) else { throw fail("size", sizeProblem) }
                    sizes.append(v)
                }
                guard (1...64).contains(sizes.count) else { throw fail("size", "a size list has at most 64 sizes") }
                spec.sizes = sizes.count == 1 ? .fixed(sizes[0]) : .list(sizes)
            }
        }
        if let small = spec.sizes.pattern.first(where: { $0 < spec.smallestFrame }) {
            throw fail("size", "size \(small) is too small for a \(spec.tag != nil ? "tagged, " : "")"
                       + "\(spec.stamped ? "stamped " : "")frame (at least \(spec.smallestFrame))")
        }
        if spec.flows * spec.sizes.pattern.count > GeneratorSpec.poolLimit {
            throw fail("flows", "flows × sizes in the pattern must be at most \(GeneratorSpec.poolLimit)")
        }
        if spec.destinationIsAFlowSource {
            throw fail("dst", "dst \(spec.destination) is the source of one of the flows (src + k × 256)")
        }
        return spec
    }

    /// `unlimited`, `1000pps`, `1.5Mpps`, `10Gbps`, `250kbit/s`.
    public static func rate(_ text: String) -> GeneratorSpec.Rate? {
        if text == "unlimited" { return .unlimited }
        var number = Substring(text)
        let bits: Bool
        if number.hasSuffix("pps") {
            bits = false
            number = number.dropLast(3)
        } else if number.hasSuffix("bps") || number.hasSuffix("bit/s") {
            bits = true
            number = number.dropLast(number.hasSuffix("bps") ? 3 : 5)
        } else {
            return nil
        }
        var scale = 1.0
        switch number.last {
        case "k": scale = 1e3
        case "M": scale = 1e6
        case "G": scale = 1e9
        default: break
        }
        if scale != 1 { number = number.dropLast() }
        guard number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }), let value = Double(number),
              value > 0, value.isFinite else { return nil }
        let rate = value * scale
        if bits {
            return rate <= 1e12 ? .bitsPerSecond(rate) : nil
        }
        return rate <= 1e9 ? .framesPerSecond(rate) : nil
    }
}
