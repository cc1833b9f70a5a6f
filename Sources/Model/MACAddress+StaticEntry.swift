/// Why a static forwarding entry cannot name an address: the one rule behind both
/// `ferry ctl fdb add` and the config file's `fdb:`, each of which words it its own way.
public enum StaticEntryRefusal: Equatable, Sendable {
    /// The I/G bit is set (IEEE 802-2014 §8.2): the address names no one station, and
    /// learning never records one, so a static entry for it would only mislead.
    case groupAddress
    /// 00:00:00:00:00:00, which no station has.
    case nullAddress
}

extension MACAddress {
    /// Why a static forwarding entry cannot name this address; nil when it can.
    public var staticEntryRefusal: StaticEntryRefusal? {
        if isMulticast { return .groupAddress }
        if array.allSatisfy({ $0 == 0 }) { return .nullAddress }
        return nil
    }
}
