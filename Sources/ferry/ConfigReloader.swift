import Configuration
import Engine
import Logging
import Ports

/// SIGHUP: re-read the config file and apply what changed. Runs on the control thread
/// (signals reach it through the control loop), the only thread that changes ports.
final class ConfigReloader {
    let path: String
    /// What the switch runs of the file: its ports as last applied, its settings as the
    /// switch started with them (they never change live, so a changed one is named again
    /// at every reload until a restart).
    private(set) var running: FerryConfig
    private let sw: Switch
    private let logger: Logger
    /// Adds the command line's ports and settings to a file's config, as at start.
    private let complete: (FerryConfig) throws -> FerryConfig

    init(path: String, running: FerryConfig, switch sw: Switch, logger: Logger,
         complete: @escaping (FerryConfig) throws -> FerryConfig) {
        self.path = path
        self.running = running
        self.sw = sw
        self.logger = logger
        self.complete = complete
    }

    func reload() {
        logger.notice("SIGHUP: re-reading \(path)")
        let wanted: FerryConfig
        do {
            wanted = try complete(try FerryConfig.load(path: path))
        } catch let errors as ConfigErrors {
            for error in errors.errors { logger.error("\(error)") }
            return logger.error("\(path) has errors: nothing applied, the switch runs as it was")
        } catch {
            return logger.error("\(path): \(error): nothing applied, the switch runs as it was")
        }
        // A file port removed with `ferry ctl port del` (or replaced by another of its name)
        // no longer runs: leaving it out of the comparison adds it back. A port added with
        // `ferry ctl port add` was never the file's, and a reload leaves it alone.
        running.ports = running.ports.filter { port in
            sw.port(named: port.name ?? "").map { $0.spec.describesSamePort(as: port) } ?? false
        }
        let change = ConfigChange(from: running, to: wanted)
        if change.isEmpty { return logger.notice("\(path): nothing changed") }
        if !change.restartOnlySettings.isEmpty {
            logger.warning("""
                \(path): changes to \(change.restartOnlySettings.joined(separator: ", ")) \
                take effect only when Ferry restarts
                """)
        }
        for name in change.removedPorts where !change.changedPorts.contains(name) {
            logger.notice("\(path): port \(name) is gone")
        }
        for name in change.changedPorts { logger.notice("\(path): port \(name) changed; it is removed and added again") }
        for spec in change.addedPorts where !change.changedPorts.contains(spec.name ?? "") {
            logger.notice("\(path): port \(spec.name ?? "?") is new: \(spec.text)")
        }
        if !change.removedPorts.isEmpty || !change.addedPorts.isEmpty { applyPortChanges(change) }
        // After the ports: a port added again comes back without entries, and gets its own here.
        StaticEntries.remove(change.removedStaticEntries, from: sw, logger: logger)
        StaticEntries.install(change.addedStaticEntries, in: sw, logger: logger)
        running.staticEntries = wanted.staticEntries
    }

    /// Removes, then adds, through the switch's live port calls; `running` follows what
    /// succeeded, so a port that failed to open is tried again at the next SIGHUP.
    private func applyPortChanges(_ change: ConfigChange) {
        for name in change.removedPorts {
            do throws(SwitchError) {
                try sw.removePort(named: name)
            } catch {
                logger.error("\(path): port \(name) could not be removed: \(error)")
                continue
            }
            running.ports.removeAll { $0.name == name }
        }
        for spec in change.addedPorts {
            do throws(SwitchError) {
                try sw.addPort(spec)
            } catch {
                logger.error("\(path): port \(spec.name ?? "?") could not be added: \(error); the next SIGHUP tries again")
                continue
            }
            running.ports.append(spec)
        }
        logger.notice("\(path): applied; \(sw.ports.count) ports")
    }
}
