/// The reply to `show vteps`: every remote VTEP of every vxlan port, in port
/// then number order, with its counters.
public struct VTEPsReply: Codable, Equatable, Sendable {
    public var vteps: [VTEPInfo]

    public init(vteps: [VTEPInfo]) { self.vteps = vteps }
}

public struct VTEPInfo: Codable, Equatable, Sendable {
    /// The vxlan port's name.
    public var port: String
    public var vni: Int
    /// The VTEP's underlay address.
    public var address: String
    /// Given with `remote=`: in the flood list (false: learned from its datagrams).
    public var flood: Bool
    /// Datagrams and inner bytes from it, and to it.
    public var rxPackets: UInt64
    public var rxBytes: UInt64
    public var txPackets: UInt64
    public var txBytes: UInt64

    public init(port: String, vni: Int, address: String, flood: Bool, rxPackets: UInt64, rxBytes: UInt64,
                txPackets: UInt64, txBytes: UInt64) {
        self.port = port
        self.vni = vni
        self.address = address
        self.flood = flood
        self.rxPackets = rxPackets
        self.rxBytes = rxBytes
        self.txPackets = txPackets
        self.txBytes = txBytes
    }

    enum CodingKeys: String, CodingKey {
        case port, vni, address, flood, rxPackets = "rx_packets", rxBytes = "rx_bytes", txPackets = "tx_packets",
             txBytes = "tx_bytes"
    }
}
