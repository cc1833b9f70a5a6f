import Model
import Switching

/// A static forwarding entry the config file lists under `fdb:`: installed when the switch
/// starts, as `ferry ctl fdb add` installs one (it never ages and never moves), and kept in
/// step with the file on SIGHUP.
public struct StaticFDBEntry: Equatable, Sendable {
    public var mac: MACAddress
    /// The port's name; a port of the file or of the command line.
    public var port: String
    /// nil: the VLAN the port's untagged frames belong to (an access port's, a trunk's
    /// native one), as `ferry ctl fdb add` without `--vlan`.
    public var vlan: UInt16?
    /// Where the entry is in the file (1-based), for the errors only the whole config can
    /// tell (its port unknown, its VLAN not on the port); nil for an entry not from a file.
    public var line: Int?
    public var column: Int?

    public init(mac: MACAddress, port: String, vlan: UInt16? = nil, line: Int? = nil, column: Int? = nil) {
        self.mac = mac
        self.port = port
        self.vlan = vlan
        self.line = line
        self.column = column
    }

    /// Why `mac` cannot be a static entry, as `ferry ctl fdb add` refuses it; nil when it can.
    public static func problem(with mac: MACAddress) -> String? {
        switch mac.staticEntryRefusal {
        case .groupAddress?: "\(mac) is a group address; a static entry names one station"
        case .nullAddress?: "\(mac) is the null address"
        case nil: nil
        }
    }

    /// Why an entry cannot be installed on a config's ports.
    public struct Refusal: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// The database key and port the entry comes to on `ports`, or why it cannot.
    public func resolved(on ports: [PortSpec]) -> Result<Resolved, Refusal> {
        func refused(_ why: String) -> Result<Resolved, Refusal> { .failure(Refusal(description: "fdb: \(mac): \(why)")) }
        guard let spec = ports.first(where: { $0.name == port }) else {
            return refused("no port is named '\(port)'")
        }
        guard let id = vlan ?? spec.vlan.untaggedVLAN else {
            return refused("port '\(port)' is a trunk (\(spec.vlan)) with no native VLAN: give a vlan")
        }
        guard spec.vlan.vlans.contains(id) else {
            return refused("port '\(port)' does not carry VLAN \(id) (\(spec.vlan))")
        }
        return .success(Resolved(key: FDBKey(vlan: id, mac: mac), port: port))
    }

    /// An entry as the database holds it: its VLAN settled.
    public struct Resolved: Hashable, Sendable, CustomStringConvertible {
        public let key: FDBKey
        public let port: String

        public init(key: FDBKey, port: String) {
            self.key = key
            self.port = port
        }

        public var description: String { "\(key.macAddress) vlan \(key.vlan) on port \(port)" }
    }
}

extension FerryConfig {
    /// The `fdb:` entries as the database will hold them, on this config's ports; the ones
    /// `refusals` names are left out.
    public var resolvedStaticEntries: [StaticFDBEntry.Resolved] {
        staticEntries.compactMap { try? $0.resolved(on: ports).get() }
    }
}
