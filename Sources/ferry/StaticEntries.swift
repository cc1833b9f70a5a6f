import Configuration
import Engine
import Logging
import Switching

/// The config file's `fdb:` entries in the running switch's database. Called on the
/// control thread, the database's one writer (as `fdb-add` is): at start, and by
/// `ConfigReloader` when the file changes.
enum StaticEntries {
    /// Pins each entry to its port, replacing any entry for the same address and VLAN;
    /// an entry whose port is not running (it failed to open) or that finds the table full
    /// is logged and left out.
    static func install(_ entries: [StaticFDBEntry.Resolved], in sw: Switch, logger: Logger) {
        for entry in entries {
            guard let port = sw.port(named: entry.port) else {
                logger.error("fdb: static \(entry) not installed: the port is not running")
                continue
            }
            guard sw.database.addStatic(entry.key, port: port.index) else {
                logger.error("fdb: static \(entry) not installed: the table is full (\(sw.database.capacity) entries)")
                continue
            }
            logger.info("fdb: static \(entry)")
        }
    }

    /// Takes out the entries the file no longer lists (whatever now holds their address
    /// and VLAN: a static entry never moves, so it is still the file's, or one that
    /// `ferry ctl fdb add` put over it).
    static func remove(_ entries: [StaticFDBEntry.Resolved], from sw: Switch, logger: Logger) {
        for entry in entries where sw.database.remove(entry.key) {
            logger.info("fdb: static \(entry) removed")
        }
    }
}
