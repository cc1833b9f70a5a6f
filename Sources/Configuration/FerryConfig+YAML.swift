import Foundation
import Logging
import Model
import Platform
import Switching
import Yams

extension FerryConfig {
    /// The config in the file at `path`; every error names the file as `path` gives it.
    public static func load(path: String) throws(ConfigErrors) -> FerryConfig {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            let reason = (error as NSError).userInfo[NSUnderlyingErrorKey].map { "\($0)" } ?? error.localizedDescription
            throw ConfigErrors([ConfigError(file: path, line: nil, column: nil, message: "cannot read the file: \(Self.readFailure(reason))")])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigErrors([ConfigError(file: path, line: nil, column: nil, message: "not UTF-8 text")])
        }
        return try FerryConfig(yaml: text, file: path)
    }

    /// Foundation words a missing file several ways; the errno text is what a user knows.
    private static func readFailure(_ reason: String) -> String {
        for known in ["No such file or directory", "Permission denied", "Is a directory"] where reason.contains(known) {
            return known
        }
        return reason
    }

    /// The config a YAML document describes; `file` is only for the messages.
    public init(yaml: String, file: String) throws(ConfigErrors) {
        var reader = ConfigReader(file: file)
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw ConfigErrors([reader.syntaxError(error)])
        } catch {
            throw ConfigErrors([ConfigError(file: file, line: nil, column: nil, message: "\(error)")])
        }
        guard let root else {
            throw ConfigErrors([ConfigError(file: file, line: 1, column: 1, message:
                "the file is empty (expected a mapping with keys \(Self.sections.joined(separator: ", ")))")])
        }
        self.init()
        reader.read(root, into: &self)
        if !reader.errors.isEmpty { throw ConfigErrors(reader.errors) }
    }
}

/// Walks the YAML nodes, checking every key and value against what the config allows
/// and noting each mistake at its node's line and column; keeps going after one.
struct ConfigReader {
    let file: String
    private(set) var errors: [ConfigError] = []

    init(file: String) { self.file = file }

    mutating func fail(_ node: Node, _ message: String) {
        errors.append(ConfigError(file: file, line: node.mark?.line ?? 1, column: node.mark?.column ?? 1, message: message))
    }

    /// A libyaml error in our format; Yams' own description repeats the whole document.
    func syntaxError(_ error: YamlError) -> ConfigError {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let during = context.map { " (\($0.text) at line \($0.mark.line), column \($0.mark.column))" } ?? ""
            return ConfigError(file: file, line: mark.line, column: mark.column, message: "invalid YAML: \(problem)\(during)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            let keys = duplicates.map { "'\($0)'" }.joined(separator: ", ")
            return ConfigError(file: file, line: context.mark.line, column: context.mark.column,
                               message: "key \(keys) given twice in one mapping")
        default:
            return ConfigError(file: file, line: nil, column: nil, message: "invalid YAML: \(error)")
        }
    }

    // MARK: - The sections

    mutating func read(_ root: Node, into config: inout FerryConfig) {
        guard let entries = mapping(root, nil, keys: FerryConfig.sections,
                                    expected: "a mapping with keys \(FerryConfig.sections.joined(separator: ", "))") else { return }
        var sawPorts = false
        for (key, value) in entries {
            switch key {
            case "switch": readSwitch(value, into: &config.switchSettings)
            case "control": readControl(value, into: &config.control)
            case "metrics": readMetrics(value, into: &config.metrics)
            case "ports":
                sawPorts = true
                config.ports = readPorts(value)
            case "fdb": config.staticEntries = readStaticEntries(value)
            default: break
            }
        }
        if !sawPorts { fail(root, "missing key 'ports' (a switch needs at least one port)") }
    }

    private static let switchKeys = ["workers", "cpus", "batch", "fdb_capacity", "aging_time", "log_level", "idle",
                                             "wake_priority"]

    mutating func readSwitch(_ node: Node, into settings: inout SwitchSettings) {
        guard let entries = mapping(node, "switch", keys: Self.switchKeys,
                                    expected: "a mapping with keys \(Self.switchKeys.joined(separator: ", "))") else { return }
        for (key, value) in entries {
            switch key {
            case "workers": settings.workers = integer(value, "switch", key, SwitchSettings.workerCounts) ?? settings.workers
            case "batch": settings.batch = integer(value, "switch", key, SwitchSettings.batchSizes) ?? settings.batch
            case "fdb_capacity":
                settings.fdbCapacity = integer(value, "switch", key, SwitchSettings.fdbCapacities) ?? settings.fdbCapacity
            case "aging_time": settings.agingTime = integer(value, "switch", key, SwitchSettings.agingTimes) ?? settings.agingTime
            case "cpus": settings.cpus = cpus(value)
            case "log_level": settings.logLevel = choice(value, key, Logger.Level.self) ?? settings.logLevel
            case "idle": settings.idle = choice(value, key, IdlePolicy.self) ?? settings.idle
            case "wake_priority": settings.wakePriority = choice(value, key, WakePriority.self) ?? settings.wakePriority
            default: break
            }
        }
    }

    /// A `switch:` value that must name one of `T`'s cases; nil (and a failure) otherwise.
    private mutating func choice<T: RawRepresentable & CaseIterable>(_ value: Node, _ key: String, _: T.Type) -> T?
        where T.RawValue == String {
        guard let text = scalar(value, "switch", key) else { return nil }
        guard let chosen = T(rawValue: text) else {
            let names = T.allCases.map(\.rawValue).joined(separator: ", ")
            fail(value, "switch: \(key) must be one of \(names), not '\(text)'")
            return nil
        }
        return chosen
    }

    /// `cpus: [0, 1]` or `cpus: "0,2-3"`.
    private mutating func cpus(_ node: Node) -> [Int]? {
        let expected = "a list of CPU numbers or a string like \"0,2-3\""
        switch node {
        case .sequence(let items):
            var cpus: [Int] = []
            for item in items {
                guard let n = integer(item, "switch", "cpus", CPUList.numbers, what: "CPU numbers") else { return nil }
                cpus.append(n)
            }
            if cpus.isEmpty { fail(node, "switch: cpus must be \(expected), not an empty list") }
            return cpus.isEmpty ? nil : cpus
        case .scalar(let s) where !isNull(node):
            switch CPUList.parse(s.string) {
            case .success(let cpus): return cpus
            case .failure(let invalid):
                fail(node, "switch: cpus: \(invalid.description)")
                return nil
            }
        default:
            fail(node, "switch: cpus must be \(expected), not \(describe(node))")
            return nil
        }
    }

    private static let controlKeys = ["path", "owner", "group", "mode"]

    mutating func readControl(_ node: Node, into control: inout ControlSocketSettings) {
        guard let entries = mapping(node, "control", keys: Self.controlKeys,
                                    expected: "a mapping with keys \(Self.controlKeys.joined(separator: ", "))") else { return }
        var access: [String: (String, Node)] = [:]
        for (key, value) in entries {
            guard let text = scalar(value, "control", key) else { continue }
            if key == "path" {
                if text.isEmpty { fail(value, "control: path must not be empty") } else { control.path = text }
            } else {
                access[key] = (text, value)
            }
        }
        do throws(SocketPermissions.Invalid) {
            control.access = try SocketPermissions(owner: access["owner"]?.0, group: access["group"]?.0,
                                                   modeText: access["mode"]?.0)
        } catch {
            if let node = access[error.key]?.1 { fail(node, "control: \(error.problem)") }
        }
    }

    mutating func readMetrics(_ node: Node, into metrics: inout MetricsSettings) {
        guard let entries = mapping(node, "metrics", keys: ["listen"], expected: "a mapping with the key listen") else { return }
        for (key, value) in entries where key == "listen" {
            guard let text = scalar(value, "metrics", key) else { continue }
            guard ListenAddress(text) != nil else {
                fail(value, MetricsSettings.listenProblem(text))
                continue
            }
            metrics.listen = text
        }
    }

    // MARK: - Ports

    mutating func readPorts(_ node: Node) -> [PortSpec] {
        guard case .sequence(let items) = node else {
            fail(node, "ports must be a list of ports, not \(describe(node))")
            return []
        }
        guard !items.isEmpty else {
            fail(node, "ports must hold at least one port")
            return []
        }
        if items.count > PortSet.maxPorts {
            fail(node, "ports: \(items.count) ports, a switch has at most \(PortSet.maxPorts)")
        }
        var specs: [PortSpec] = []
        var lineOfName: [String: Int] = [:]
        for (i, item) in items.enumerated() {
            guard let spec = readPort(item, index: i) else { continue }
            let name = spec.name!
            if let earlier = lineOfName[name] {
                let nameNode = item.mapping?.first { $0.key.string == "name" }?.value ?? item
                fail(nameNode, "port '\(name)': name already used by the port at line \(earlier)")
                continue
            }
            lineOfName[name] = item.mark?.line ?? 0
            specs.append(spec)
        }
        return specs
    }

    private static let portTypes = PortSpec.types.joined(separator: ", ")

    /// One port: `name` and `type` first, then that type's options as `PortSpec` names
    /// them; the keyed `PortSpec` initializer checks the values, as it does for `--port`.
    mutating func readPort(_ node: Node, index: Int) -> PortSpec? {
        guard case .mapping(let pairs) = node else {
            fail(node, "ports[\(index)] must be a mapping with the port's name, type and options, not \(describe(node))")
            return nil
        }
        func value(_ key: String) -> Node? { pairs.first { $0.key.string == key }?.value }
        // Named by its name in messages when it has a usable one.
        var label = "ports[\(index)]"
        if let nameNode = value("name"), case .scalar(let s) = nameNode, !isNull(nameNode), !s.string.isEmpty {
            label = "port '\(s.string)'"
        }
        guard value("name") != nil else {
            fail(node, "\(label): missing key 'name'")
            return nil
        }
        guard let typeNode = value("type") else {
            fail(node, "\(label): missing key 'type' (one of: \(Self.portTypes))")
            return nil
        }
        guard let type = scalar(typeNode, label, "type") else { return nil }
        guard let kindKeys = PortSpec.keys(of: type) else {
            fail(typeNode, "\(label): unknown port type '\(type)' (\(Self.portTypes))")
            return nil
        }
        let allowed = ["name", "type"] + kindKeys.filter { $0 != "name" }
        guard let entries = mapping(node, label, keys: allowed, expected: "") else { return nil }
        var options: [String: String] = [:]
        var nodes: [String: Node] = [:]
        var valid = true
        for (key, value) in entries where key != "type" {
            nodes[key] = value
            if key == "trunk", case .sequence(let ids) = value {
                // `trunk: [10, 20-30]` is the text form's `trunk=10,20-30`.
                var items: [String] = []
                for id in ids {
                    guard let text = scalar(id, label, "trunk", what: "VLAN ids or ranges") else { valid = false; break }
                    items.append(text)
                }
                options[key] = items.joined(separator: ",")
            } else if let text = scalar(value, label, key) {
                // YAML spells a boolean several ways (true, True, yes...): the spec takes true or false.
                options[key] = PortSpec.booleanKeys.contains(key) ? (value.bool.map { "\($0)" } ?? text) : text
            } else {
                valid = false
            }
        }
        guard valid else { return nil }
        do throws(PortSpec.ParseError) {
            return try PortSpec(type: type, options: options, text: PortSpec.text(type: type, options: options))
        } catch {
            if let key = error.key, let value = nodes[key] {
                fail(value, "\(label): \(error.problem)")
            } else if let key = error.key, key != "type" {
                fail(node, "\(label): missing key '\(key)': \(error.problem)")
            } else {
                fail(node, "\(label): \(error.problem)")
            }
            return nil
        }
    }

    // MARK: - Static entries

    private static let staticEntryKeys = ["mac", "port", "vlan"]

    /// `fdb:` a list of `{mac: ..., port: ..., vlan: ...}` (vlan optional). Each value's shape
    /// is checked here; whether the port exists and carries the VLAN is the validator's
    /// (`FerryConfig.refusals`), which also sees the command line's ports.
    mutating func readStaticEntries(_ node: Node) -> [StaticFDBEntry] {
        guard case .sequence(let items) = node else {
            fail(node, "fdb must be a list of static entries ({mac, port, vlan}), not \(describe(node))")
            return []
        }
        var entries: [StaticFDBEntry] = []
        for (i, item) in items.enumerated() {
            let label = "fdb[\(i)]"
            guard let pairs = mapping(item, label, keys: Self.staticEntryKeys,
                                      expected: "a mapping with keys \(Self.staticEntryKeys.joined(separator: ", "))")
            else { continue }
            var mac: MACAddress?
            var port: String?
            var vlan: UInt16?
            var valid = true
            for (key, value) in pairs {
                switch key {
                case "mac":
                    guard let text = scalar(value, label, key) else { valid = false; continue }
                    guard let parsed = MACAddress(text) else {
                        fail(value, "\(label): mac '\(text)' is not a MAC address (six hex pairs, aa:bb:cc:dd:ee:ff)")
                        valid = false
                        continue
                    }
                    if let problem = StaticFDBEntry.problem(with: parsed) {
                        fail(value, "\(label): \(problem)")
                        valid = false
                    }
                    mac = parsed
                case "port":
                    guard let text = scalar(value, label, key) else { valid = false; continue }
                    guard !text.isEmpty else {
                        fail(value, "\(label): port must name a port, not ''")
                        valid = false
                        continue
                    }
                    port = text
                case "vlan":
                    let range = Int(VLANMode.validIDs.lowerBound)...Int(VLANMode.validIDs.upperBound)
                    guard let id = integer(value, label, key, range, what: "a VLAN id") else { valid = false; continue }
                    vlan = UInt16(id)
                default: break
                }
            }
            for key in ["mac", "port"] where !pairs.contains(where: { $0.0 == key }) {
                fail(item, "\(label): missing key '\(key)'")
                valid = false
            }
            guard valid, let mac, let port else { continue }
            entries.append(StaticFDBEntry(mac: mac, port: port, vlan: vlan, line: item.mark?.line, column: item.mark?.column))
        }
        return entries
    }

    // MARK: - Values

    /// The entries of a mapping with string keys, each key one of `keys`; nil (and an
    /// error) when the node is no mapping. `expected` describes the mapping for that error.
    private mutating func mapping(_ node: Node, _ context: String?, keys: [String], expected: String) -> [(String, Node)]? {
        let prefix = context.map { "\($0): " } ?? ""
        guard case .mapping(let pairs) = node else {
            fail(node, "\(context ?? "the file") must be \(expected), not \(describe(node))")
            return nil
        }
        var entries: [(String, Node)] = []
        for (keyNode, value) in pairs {
            let key = keyNode.scalar?.string ?? "\(keyNode)"
            guard keys.contains(key) else {
                fail(keyNode, "\(prefix)unknown key '\(key)' (expected one of: \(keys.joined(separator: ", ")))")
                continue
            }
            entries.append((key, value))
        }
        return entries
    }

    /// The text of a single value; an error for a list, a mapping or nothing at all.
    private mutating func scalar(_ node: Node, _ context: String, _ key: String, what: String = "a single value") -> String? {
        guard case .scalar(let s) = node, !isNull(node) else {
            fail(node, "\(context): \(key) must be \(what), not \(describe(node))")
            return nil
        }
        return s.string
    }

    /// A decimal whole number within `range`.
    private mutating func integer(_ node: Node, _ context: String, _ key: String, _ range: ClosedRange<Int>,
                                  what: String = "a whole number") -> Int? {
        guard case .scalar(let s) = node, !isNull(node) else {
            fail(node, "\(context): \(key) must be \(what) \(range.lowerBound)...\(range.upperBound), not \(describe(node))")
            return nil
        }
        guard let n = Int(s.string), range.contains(n) else {
            fail(node, "\(context): \(key) must be \(what) \(range.lowerBound)...\(range.upperBound), not '\(s.string)'")
            return nil
        }
        return n
    }

    /// `key:` with nothing after it, or `~` / `null` (YAML 1.2 core schema); quoted, each is a string.
    private func isNull(_ node: Node) -> Bool {
        guard case .scalar(let s) = node else { return false }
        return s.style == .plain && ["", "~", "null", "Null", "NULL"].contains(s.string)
    }

    /// How a wrong value is named in a message.
    private func describe(_ node: Node) -> String {
        switch node {
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .scalar(let s): isNull(node) ? "nothing" : "'\(s.string)'"
        case .alias: "an alias"
        }
    }
}
