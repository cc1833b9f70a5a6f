import Engine
import Foundation
import Packets
import Platform
import Ports
import Switching

/// A request the control socket refuses; `message` is the reply's "error".
struct ControlError: Error, Equatable {
    let message: String

    init(_ message: String) { self.message = message }
}

/// The fields of one request, read with the checks every command shares.
struct ControlRequest {
    let fields: [String: Any]

    func string(_ key: String) throws(ControlError) -> String {
        guard let value = fields[key] else { throw ControlError("request has no \"\(key)\"") }
        guard let text = value as? String else { throw ControlError("\"\(key)\" must be a string") }
        return text
    }

    /// `"mac"`: six hex pairs separated by ':' or '-'.
    func mac() throws(ControlError) -> MACAddress {
        let text = try string("mac")
        guard let mac = MACAddress(text) else {
            throw ControlError("'\(text)' is not a MAC address (want aa:bb:cc:dd:ee:ff)")
        }
        return mac
    }

    /// `key` when present: a JSON whole number (not a string or a boolean) in `range`.
    func wholeNumber(_ key: String, in range: ClosedRange<Int>) throws(ControlError) -> Int? {
        guard let value = fields[key] else { return nil }
        // JSON true/false arrive as NSNumbers that cast to Int; only their type encoding, "c", tells.
        guard let number = value as? Int, (value as? NSNumber)?.objCType.pointee != CChar(UInt8(ascii: "c")),
              (value as? Double).map({ $0 == $0.rounded() }) ?? true, range.contains(number) else {
            throw ControlError("\"\(key)\" must be a whole number \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }

    /// `"vlan"` when present: a whole number in 1...4094 (IEEE 802.1Q §9.6).
    func vlan() throws(ControlError) -> UInt16? {
        guard let value = fields["vlan"] else { return nil }
        let range = VLANMode.validIDs
        // JSON true/false arrive as NSNumbers that cast to Int (and 0 and 1 cast to Bool,
        // so `is Bool` cannot tell them apart); only their type encoding, "c", does.
        guard let number = value as? Int, (value as? NSNumber)?.objCType.pointee != CChar(UInt8(ascii: "c")) else {
            throw ControlError("\"vlan\" must be a whole number \(range.lowerBound)...\(range.upperBound)")
        }
        guard number >= Int(range.lowerBound) && number <= Int(range.upperBound) else {
            throw ControlError("vlan \(number) is not \(range.lowerBound)...\(range.upperBound)")
        }
        return UInt16(number)
    }
}

extension ControlServer {
    static let commands = ["stats", "show", "fdb-add", "fdb-del", "port", "capture"]
    static let portOperations = ["add", "del"]
    static let showables = ["ports", "fdb", "stats"]

    /// The reply to one request. Runs on the control thread, which is also the
    /// forwarding database's one writer (LearningService is served by the same
    /// ControlLoop), so `fdb-add` and `fdb-del` write the table directly: no
    /// second writer, no hand-over queue.
    func answer(_ fields: [String: Any]) -> [String: Any] {
        do throws(ControlError) {
            let request = ControlRequest(fields: fields)
            switch try request.string("cmd") {
            case "stats": return StatsReport.json(sw)
            case "show": return try show(request)
            case "fdb-add": return try addStatic(request)
            case "fdb-del": return try remove(request)
            case "port": return try changePorts(request)
            case let cmd:
                throw ControlError("unknown command '\(cmd)' (one of: \(Self.commands.joined(separator: ", ")))")
            }
        } catch {
            return ["error": error.message]
        }
    }

    private func show(_ request: ControlRequest) throws(ControlError) -> [String: Any] {
        let valid = Self.showables.joined(separator: ", ")
        guard request.fields["what"] != nil else { throw ControlError("request has no \"what\" (one of: \(valid))") }
        switch try request.string("what") {
        case "ports": return ["ports": PortsReport.json(sw)]
        case "fdb": return FDBReport.json(sw, now: MonotonicClock.seconds())
        case "stats": return StatsReport.json(sw)
        case let what: throw ControlError("cannot show '\(what)' (one of: \(valid))")
        }
    }

    /// `fdb-add`: pins a unicast MAC in a VLAN to a port; replaces any entry,
    /// learned or static, for the same MAC and VLAN.
    private func addStatic(_ request: ControlRequest) throws(ControlError) -> [String: Any] {
        let mac = try request.mac()
        // The I/G bit (IEEE 802-2014 §8.2): a group address names no one station, and
        // learning never records one, so a static entry for it would only mislead.
        if mac.isMulticast {
            throw ControlError("\(mac) is a group address; a static entry needs a unicast address")
        }
        if mac.bits48 == 0 { throw ControlError("\(mac) is the null address; a static entry needs a unicast address") }
        let name = try request.string("port")
        guard let port = sw.port(named: name) else { throw ControlError(SwitchError.unknownPort(name).description) }
        let vlan: UInt16
        if let given = try request.vlan() {
            guard port.vlan.vlans.contains(given) else {
                throw ControlError("port '\(name)' does not carry vlan \(given) (it is \(port.vlan))")
            }
            vlan = given
        } else {
            guard case .access(let v) = port.vlan else {
                throw ControlError("port '\(name)' is a trunk (\(port.vlan)): give a vlan")
            }
            vlan = v
        }
        guard sw.database.addStatic(FDBKey(vlan: vlan, mac: mac), port: port.index) else {
            throw ControlError("the forwarding database is full (capacity \(sw.database.capacity))")
        }
        logger.info("fdb: static \(mac) vlan \(vlan) on port \(name)")
        return ["ok": true]
    }

    /// `fdb-del`: removes the entry, static or learned, for a MAC in a VLAN (default 1).
    private func remove(_ request: ControlRequest) throws(ControlError) -> [String: Any] {
        let mac = try request.mac()
        let vlan = try request.vlan() ?? VLANMode.defaultVLAN
        guard sw.database.remove(FDBKey(vlan: vlan, mac: mac)) else {
            throw ControlError("no entry for \(mac) in vlan \(vlan)")
        }
        logger.info("fdb: removed \(mac) vlan \(vlan)")
        return ["ok": true]
    }

    /// `port`: adds a port from a spec (`op` `add`) or removes one by name
    /// (`del`) while the others forward; the reply names the port as `show ports` would.
    private func changePorts(_ request: ControlRequest) throws(ControlError) -> [String: Any] {
        let valid = Self.portOperations.joined(separator: ", ")
        guard request.fields["op"] != nil else { throw ControlError("request has no \"op\" (one of: \(valid))") }
        switch try request.string("op") {
        case "add":
            let text = try request.string("spec")
            let spec: PortSpec
            do throws(PortSpec.ParseError) { spec = try PortSpec(parsing: text) } catch {
                throw ControlError(error.description)
            }
            // Listening there would unlink this very socket.
            if case .vhost(let socket, _, _, _) = spec.kind, socket == path {
                throw ControlError("port '\(text)': \(socket) is Ferry's control socket")
            }
            do throws(SwitchError) {
                return ["ok": true, "port": PortsReport.json(try sw.addPort(spec))]
            } catch {
                throw ControlError(error.description)
            }
        case "del":
            let name = try request.string("name")
            guard let port = sw.port(named: name) else { throw ControlError(SwitchError.unknownPort(name).description) }
            // Described before it goes: once removed, its state no longer says what it was.
            let report = PortsReport.json(port)
            do throws(SwitchError) { try sw.removePort(named: name) } catch { throw ControlError(error.description) }
            return ["ok": true, "port": report]
        case let op:
            throw ControlError("unknown port operation '\(op)' (one of: \(valid))")
        }
    }
}
