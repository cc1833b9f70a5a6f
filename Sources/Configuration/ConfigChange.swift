import Model

/// What a reload has to do to turn the running config into a new one: ports to take
/// away and ports to add (a port whose spec changed is both: a port is never changed in
/// place), static entries to take out and to put in, and the settings that differ but
/// only take effect at the next start.
public struct ConfigChange: Equatable, Sendable {
    /// Names of the ports to remove, in the running config's order: gone, or changed.
    public var removedPorts: [String] = []
    /// The ports to add, in the new config's order: new, or the new form of a changed one.
    public var addedPorts: [PortSpec] = []
    /// Names of the ports in both that differ (each also in `removedPorts` and `addedPorts`).
    public var changedPorts: [String] = []
    /// Settings that differ but cannot change while the switch runs, as the file names
    /// them: "switch.workers", "control.path"...
    public var restartOnlySettings: [String] = []
    /// `fdb:` entries the new config no longer has (or has on another port), to remove.
    public var removedStaticEntries: [StaticFDBEntry.Resolved] = []
    /// `fdb:` entries to install: new ones, and those on a port being added (again: removing
    /// a port forgets every entry on it).
    public var addedStaticEntries: [StaticFDBEntry.Resolved] = []

    public var isEmpty: Bool {
        removedPorts.isEmpty && addedPorts.isEmpty && restartOnlySettings.isEmpty
            && removedStaticEntries.isEmpty && addedStaticEntries.isEmpty
    }

    /// The difference between two configs whose ports are all named. A pure function of
    /// the two: the reload logs it, then applies it.
    public init(from running: FerryConfig, to new: FerryConfig) {
        let old = Dictionary(running.ports.map { ($0.name ?? "", $0) }, uniquingKeysWith: { first, _ in first })
        let wanted = Dictionary(new.ports.map { ($0.name ?? "", $0) }, uniquingKeysWith: { first, _ in first })
        for port in running.ports {
            let name = port.name ?? ""
            guard let replacement = wanted[name] else {
                removedPorts.append(name)
                continue
            }
            if !replacement.describesSamePort(as: port) {
                removedPorts.append(name)
                changedPorts.append(name)
            }
        }
        for port in new.ports {
            let name = port.name ?? ""
            if old[name] == nil || changedPorts.contains(name) { addedPorts.append(port) }
        }
        restartOnlySettings = Self.settingsThatDiffer(running, new)
        let before = running.resolvedStaticEntries, after = new.resolvedStaticEntries
        let installed = Set(before)
        let portsAdded = Set(addedPorts.compactMap(\.name))
        // A key that moves to another port is simply installed over its old entry.
        let keysAfter = Set(after.map(\.key))
        removedStaticEntries = before.filter { !keysAfter.contains($0.key) }
        addedStaticEntries = after.filter { !installed.contains($0) || portsAdded.contains($0.port) }
    }

    /// Workers, CPUs and burst size shape the worker threads; the database is sized once;
    /// the log level is fixed when logging starts; the sockets are bound once.
    private static func settingsThatDiffer(_ a: FerryConfig, _ b: FerryConfig) -> [String] {
        let s = a.switchSettings, t = b.switchSettings
        let checks: [(String, Bool)] = [
            ("switch.workers", s.workers != t.workers),
            ("switch.cpus", s.cpus != t.cpus),
            ("switch.batch", s.batch != t.batch),
            ("switch.fdb_capacity", s.fdbCapacity != t.fdbCapacity),
            ("switch.aging_time", s.agingTime != t.agingTime),
            ("switch.log_level", s.logLevel != t.logLevel),
            ("switch.idle", s.idle != t.idle),
            ("switch.wake_priority", s.wakePriority != t.wakePriority),
            ("control.path", a.control.path != b.control.path),
            ("control.owner", a.control.access.owner != b.control.access.owner),
            ("control.group", a.control.access.group != b.control.access.group),
            ("control.mode", a.control.access.mode != b.control.access.mode),
            ("metrics.listen", a.metrics.listen != b.metrics.listen),
        ]
        return checks.filter(\.1).map(\.0)
    }
}
