import ControlProtocol
import Engine
import Switching

/// The forwarding database as `show fdb` reports it: every entry with its
/// port's name, then the table's counters.
enum FDBReport {
    static func reply(_ sw: Switch, now: UInt64) -> FDBReply {
        let entries = sw.database.entries(now: now).map { e in
            // Entries only ever name ports of this switch; the number is a fallback, not a case.
            FDBEntryInfo(mac: e.key.macAddress.description, vlan: Int(e.key.vlan),
                         port: sw.port(index: e.port)?.name ?? e.port.description, isStatic: e.isStatic, age: e.age,
                         vtep: VTEPReport.address(sw, port: e.port, number: e.endpoint),
                         evpn: VTEPReport.isEVPN(sw, entry: e) ? true : nil)
        }
        return FDBReply(fdb: entries, counters: StatsReport.fdbCounters(sw))
    }
}
