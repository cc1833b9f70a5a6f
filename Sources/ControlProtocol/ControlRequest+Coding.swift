extension ControlRequest: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: FieldKey.self)
        try c.encode(command.rawValue, forKey: "cmd")
        switch self {
        case .hello(let version):
            try c.encode(version, forKey: "version")
        case .stats, .statsClear:
            break
        case .show(let what):
            try c.encode(what.rawValue, forKey: "what")
        case .fdbAdd(let mac, let port, let vlan):
            try c.encode(mac, forKey: "mac")
            try c.encode(port, forKey: "port")
            try c.encodeIfPresent(vlan, forKey: "vlan")
        case .fdbDel(let mac, let vlan):
            try c.encode(mac, forKey: "mac")
            try c.encodeIfPresent(vlan, forKey: "vlan")
        case .fdbFlush(let filter):
            try c.encodeIfPresent(filter.port, forKey: "port")
            try c.encodeIfPresent(filter.vlan, forKey: "vlan")
            if filter.includingStatic { try c.encode(true, forKey: "static") }
        case .portAdd(let spec):
            try c.encode(PortOperation.add.rawValue, forKey: "op")
            try c.encode(spec, forKey: "spec")
        case .portDel(let name):
            try c.encode(PortOperation.del.rawValue, forKey: "op")
            try c.encode(name, forKey: "name")
        case .capture(let p):
            try c.encode(p.port, forKey: "port")
            try c.encode(p.direction.rawValue, forKey: "direction")
            try c.encodeIfPresent(p.count, forKey: "count")
            try c.encode(p.snapLength, forKey: "snaplen")
        }
    }

    /// Reads a request's fields in the order docs/CONTROL.md lists their checks, so the
    /// first thing wrong is the one reported.
    init(fields: RequestFields) throws(ControlError) {
        let name = try fields.string("cmd")
        guard let command = ControlCommand(rawValue: name) else { throw .unknownCommand(name) }
        switch command {
        case .hello:
            guard let version = try fields.wholeNumber("version") else { throw .missingField("version") }
            guard version >= ControlProtocol.oldestVersion else { throw .unsupportedVersion(version) }
            self = .hello(version: version)
        case .stats:
            self = .stats
        case .statsClear:
            self = .statsClear
        case .show:
            let what = try fields.string("what", choices: ShowTarget.allCases.map(\.rawValue))
            guard let target = ShowTarget(rawValue: what) else { throw .unknownShowTarget(what) }
            self = .show(target)
        case .fdbAdd:
            let mac = try fields.string("mac")
            let port = try fields.string("port")
            self = .fdbAdd(mac: mac, port: port, vlan: try fields.vlan())
        case .fdbDel:
            let mac = try fields.string("mac")
            self = .fdbDel(mac: mac, vlan: try fields.vlan())
        case .fdbFlush:
            let port = try fields.optionalString("port")
            let vlan = try fields.vlan()
            self = .fdbFlush(FDBFlushFilter(port: port, vlan: vlan, includingStatic: try fields.boolean("static") ?? false))
        case .port:
            let op = try fields.string("op", choices: PortOperation.allCases.map(\.rawValue))
            switch PortOperation(rawValue: op) {
            case .add: self = .portAdd(spec: try fields.string("spec"))
            case .del: self = .portDel(name: try fields.string("name"))
            case nil: throw .unknownPortOperation(op)
            }
        case .capture:
            var p = CaptureParameters(port: try fields.string("port"))
            if let text = try fields.optionalString("direction") {
                guard let direction = CaptureDirection(rawValue: text) else { throw .unknownDirection(text) }
                p.direction = direction
            }
            p.count = try fields.wholeNumber("count", in: ControlProtocol.captureCounts)
            p.snapLength = try fields.wholeNumber("snaplen", in: ControlProtocol.snapLengths) ?? p.snapLength
            self = .capture(p)
        }
    }
}

/// A JSON object's key, spelt as it is on the wire.
struct FieldKey: CodingKey, ExpressibleByStringLiteral {
    let stringValue: String
    var intValue: Int? { nil }

    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
    init(stringLiteral value: String) { stringValue = value }
}

/// A request object's fields, each read with the type check every command shares.
/// JSON `true` is not a number and `1.5` is not a whole one (the decoder refuses both).
struct RequestFields {
    let container: KeyedDecodingContainer<FieldKey>

    /// A required string; `choices` are named in the error when it is missing.
    func string(_ key: String, choices: [String] = []) throws(ControlError) -> String {
        guard let text = try optionalString(key) else { throw .missingField(key, choices: choices) }
        return text
    }

    func optionalString(_ key: String) throws(ControlError) -> String? {
        guard container.contains(FieldKey(stringValue: key)) else { return nil }
        do { return try container.decode(String.self, forKey: FieldKey(stringValue: key)) } catch {
            throw .notAString(key)
        }
    }

    /// `key` when present: a whole number, in `range` when one is given (the error names it).
    func wholeNumber(_ key: String, in range: ClosedRange<Int>? = nil) throws(ControlError) -> Int? {
        guard container.contains(FieldKey(stringValue: key)) else { return nil }
        guard let number = try? container.decode(Int.self, forKey: FieldKey(stringValue: key)),
              range?.contains(number) ?? true else {
            throw .notAWholeNumber(key, range)
        }
        return number
    }

    /// `key` when present: JSON `true` or `false` (not 1, not "true").
    func boolean(_ key: String) throws(ControlError) -> Bool? {
        guard container.contains(FieldKey(stringValue: key)) else { return nil }
        do { return try container.decode(Bool.self, forKey: FieldKey(stringValue: key)) } catch {
            throw .notABoolean(key)
        }
    }

    /// `"vlan"` when present: a whole number in ControlProtocol.vlanIDs.
    func vlan() throws(ControlError) -> Int? {
        let vlan: Int?
        do throws(ControlError) { vlan = try wholeNumber("vlan") } catch {
            throw .notAWholeNumber("vlan", ControlProtocol.vlanIDs)
        }
        if let vlan, !ControlProtocol.vlanIDs.contains(vlan) { throw .vlanOutOfRange(vlan) }
        return vlan
    }
}
