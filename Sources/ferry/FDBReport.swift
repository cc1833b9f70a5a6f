import Engine
import Switching

/// The forwarding database as `show fdb` reports it: every entry with its
/// port's name, then the table's counters.
enum FDBReport {
    static func json(_ sw: Switch, now: UInt64) -> [String: Any] {
        let entries = sw.database.entries(now: now).map { e -> [String: Any] in
            // Entries only ever name ports of this switch; the number is a fallback, not a case.
            let port = sw.port(index: e.port)?.name ?? String(e.port)
            return ["mac": e.key.macAddress.description, "vlan": Int(e.key.vlan), "port": port,
                    "static": e.isStatic, "age": e.age]
        }
        return ["fdb": entries, "counters": StatsReport.fdbCounters(sw)]
    }
}
