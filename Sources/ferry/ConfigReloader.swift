import Configuration
import Engine
import Logging
import Ports

/// SIGHUP: re-read the config file and apply what changed. Runs on the control thread
/// (signals reach it through the control loop), the only thread that changes ports.
final class ConfigReloader {
    let path: String
    /// What the switch runs now: ports as applied, settings as the switch started with.
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
        if applyPortChanges(change) {
            // The settings stay as the switch started with them: only the ports changed.
            running.ports = wanted.ports
        }
    }

    /// THE APPLY STEP: remove, then add, through the switch's live port calls.
    ///
    /// Waits for `Switch.removePort(named:)` and `Switch.addPort(_:)` (live ports, issue 5).
    /// Until they exist nothing is applied and this says so; `running` keeps the ports the
    /// switch has, so the next SIGHUP finds the same difference. Returns whether applied.
    private func applyPortChanges(_ change: ConfigChange) -> Bool {
        guard !change.removedPorts.isEmpty || !change.addedPorts.isEmpty else { return true }
        logger.warning("\(path): this build cannot add or remove ports while running; port changes take effect when Ferry restarts")
        return false
    }
}
