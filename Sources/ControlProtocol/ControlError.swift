/// Why a request was refused. The reply carries the description as `"error"`; the
/// connection stays usable. docs/CONTROL.md lists each with its exact text.
public enum ControlError: Error, Equatable, Sendable, CustomStringConvertible {
    // The line as a whole.
    case notAnObject
    case tooLong(limit: Int)
    case tooManyConnections(limit: Int)
    case captureNotAlone

    // A field's presence and JSON type, checked while decoding.
    case missingField(String, choices: [String] = [])
    case notAString(String)
    case notAWholeNumber(String, ClosedRange<Int>? = nil)
    case notABoolean(String)
    case badID
    case unknownCommand(String)
    case unknownShowTarget(String)
    case unknownPortOperation(String)
    case unknownDirection(String)
    case vlanOutOfRange(Int)
    case unsupportedVersion(Int)

    // What the switch refuses once the request is well formed.
    case notAMACAddress(String)
    case groupAddress(String)
    case nullAddress(String)
    case vlanNotCarried(port: String, vlan: Int, mode: String)
    case trunkNeedsVLAN(port: String, mode: String)
    case databaseFull(capacity: Int)
    case noEntry(mac: String, vlan: Int)
    case controlSocketAsPort(spec: String, path: String)
    /// Worded by the part that refused: the switch, the port-spec parser, the capture service.
    case refused(String)

    public var description: String {
        switch self {
        case .notAnObject: "request is not a JSON object"
        case .tooLong(let limit): "request longer than \(limit) bytes"
        case .tooManyConnections(let limit): "too many control connections (\(limit))"
        case .captureNotAlone: "a capture must be the only request on its connection"
        case .missingField(let key, let choices) where choices.isEmpty: "request has no \"\(key)\""
        case .missingField(let key, let choices): "request has no \"\(key)\" (one of: \(Self.list(choices)))"
        case .notAString(let key): "\"\(key)\" must be a string"
        case .notAWholeNumber(let key, let range?):
            "\"\(key)\" must be a whole number \(range.lowerBound)...\(range.upperBound)"
        case .notAWholeNumber(let key, nil): "\"\(key)\" must be a whole number"
        case .notABoolean(let key): "\"\(key)\" must be true or false"
        case .badID: "\"id\" must be a string or a whole number"
        case .unknownCommand(let cmd):
            "unknown command '\(cmd)' (one of: \(Self.list(ControlCommand.allCases.map(\.rawValue))))"
        case .unknownShowTarget(let what):
            "cannot show '\(what)' (one of: \(Self.list(ShowTarget.allCases.map(\.rawValue))))"
        case .unknownPortOperation(let op):
            "unknown port operation '\(op)' (one of: \(Self.list(PortOperation.allCases.map(\.rawValue))))"
        case .unknownDirection(let direction): "direction '\(direction)' is not rx, tx or both"
        case .vlanOutOfRange(let vlan):
            "vlan \(vlan) is not \(ControlProtocol.vlanIDs.lowerBound)...\(ControlProtocol.vlanIDs.upperBound)"
        case .unsupportedVersion(let version):
            "protocol version \(version) is older than the oldest this Ferry speaks (\(ControlProtocol.oldestVersion))"
        case .notAMACAddress(let text): "'\(text)' is not a MAC address (want aa:bb:cc:dd:ee:ff)"
        case .groupAddress(let mac): "\(mac) is a group address; a static entry needs a unicast address"
        case .nullAddress(let mac): "\(mac) is the null address; a static entry needs a unicast address"
        case .vlanNotCarried(let port, let vlan, let mode): "port '\(port)' does not carry vlan \(vlan) (it is \(mode))"
        case .trunkNeedsVLAN(let port, let mode): "port '\(port)' is a trunk (\(mode)) with no native VLAN: give a vlan"
        case .databaseFull(let capacity): "the forwarding database is full (capacity \(capacity))"
        case .noEntry(let mac, let vlan): "no entry for \(mac) in vlan \(vlan)"
        case .controlSocketAsPort(let spec, let path): "port '\(spec)': \(path) is Ferry's control socket"
        case .refused(let message): message
        }
    }

    private static func list(_ names: [String]) -> String { names.joined(separator: ", ") }
}
