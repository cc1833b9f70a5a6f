/// The reply to `show fdb`: every entry, ordered by VLAN then MAC, and the table's counters.
public struct FDBReply: Codable, Equatable, Sendable {
    public var fdb: [FDBEntryInfo]
    public var counters: FDBCountersInfo

    public init(fdb: [FDBEntryInfo], counters: FDBCountersInfo) {
        self.fdb = fdb
        self.counters = counters
    }
}

public struct FDBEntryInfo: Codable, Equatable, Sendable {
    public var mac: String
    public var vlan: Int
    /// The port's name.
    public var port: String
    /// Added with `fdb-add` (true) or learned (false).
    public var isStatic: Bool
    /// Seconds since a frame from the MAC last arrived in the VLAN; 0 for a static entry.
    public var age: UInt64
    /// On a vxlan port: the remote VTEP the MAC lives behind (absent on other ports).
    public var vtep: String?
    /// True for a remote MAC from BGP EVPN (a static entry behind its VTEP); absent otherwise.
    public var evpn: Bool?

    public init(mac: String, vlan: Int, port: String, isStatic: Bool, age: UInt64, vtep: String? = nil,
                evpn: Bool? = nil) {
        self.mac = mac
        self.vlan = vlan
        self.port = port
        self.isStatic = isStatic
        self.age = age
        self.vtep = vtep
        self.evpn = evpn
    }

    enum CodingKeys: String, CodingKey {
        case mac, vlan, port, isStatic = "static", age, vtep, evpn
    }
}

/// The forwarding database's counters and limits (in `show fdb` and in `stats`).
public struct FDBCountersInfo: Codable, Equatable, Sendable {
    public var entries: UInt64
    public var learned: UInt64
    public var moves: UInt64
    public var overflows: UInt64
    public var aged: UInt64
    public var capacity: Int
    public var agingTime: UInt64

    public init(entries: UInt64, learned: UInt64, moves: UInt64, overflows: UInt64, aged: UInt64, capacity: Int,
                agingTime: UInt64) {
        self.entries = entries
        self.learned = learned
        self.moves = moves
        self.overflows = overflows
        self.aged = aged
        self.capacity = capacity
        self.agingTime = agingTime
    }

    enum CodingKeys: String, CodingKey {
        case entries, learned, moves, overflows, aged, capacity, agingTime = "aging_time"
    }
}
