import Model
import Platform
import Switching

extension FerryConfig {
    /// Everything `ferry run` refuses in this config before it opens anything, and so
    /// everything `ferry check` reports: the one validator behind both, run on the
    /// config as it will run (the file's, with the command line's ports and settings
    /// merged in, by `ferry run`; the file's alone, by `ferry check`). What remains
    /// for run to fail on is what only opening can tell: a missing interface, a
    /// socket path another process holds, a capability Ferry lacks.
    ///
    /// The reader already checked each value's shape; these are the checks that look
    /// at the config as a whole or at the system's user and group databases.
    public func refusals(file: String) -> [ConfigError] {
        var found: [String] = []
        if ports.isEmpty {
            found.append("no ports: a switch needs at least one (ports: in the file, or --port)")
        }
        if ports.count > PortSet.maxPorts {
            found.append("\(ports.count) ports: a switch has at most \(PortSet.maxPorts)")
        }
        var names = Set<String>()
        for name in ports.compactMap(\.name) where !names.insert(name).inserted {
            found.append("two ports are named '\(name)'")
        }
        if let listen = metrics.listen, ListenAddress(listen) == nil {
            found.append(MetricsSettings.listenProblem(listen))
        }
        do throws(SocketPermissions.ResolveError) { _ = try control.access.resolved() } catch {
            found.append("control socket: \(error)")
        }
        var socketUsers: [String: String] = [:]
        if let path = control.path { socketUsers[path] = "the control socket" }
        for spec in ports {
            guard case .vhost(let path, let client, _, let permissions) = spec.kind else { continue }
            do throws(SocketPermissions.ResolveError) { _ = try permissions.resolved() } catch {
                found.append("port '\(spec.name ?? spec.text)': \(error)")
            }
            // A client connects to the front-end's socket; only a server binds the path.
            guard !client else { continue }
            if let other = socketUsers[path] {
                found.append("port '\(spec.name ?? spec.text)': socket \(path) is already \(other)'s")
            } else {
                socketUsers[path] = "port '\(spec.name ?? spec.text)'"
            }
        }
        return found.map { ConfigError(file: file, line: nil, column: nil, message: $0) } + staticEntryRefusals(file: file)
    }

    /// `fdb:` entries whose port is not in the config or does not carry their VLAN, and a
    /// second entry for one address and VLAN; each at its entry's place in the file.
    private func staticEntryRefusals(file: String) -> [ConfigError] {
        var errors: [ConfigError] = []
        var seen: [FDBKey: StaticFDBEntry] = [:]
        for entry in staticEntries {
            func refuse(_ message: String) {
                errors.append(ConfigError(file: file, line: entry.line, column: entry.column, message: message))
            }
            switch entry.resolved(on: ports) {
            case .failure(let refusal):
                refuse(refusal.description)
            case .success(let resolved):
                if let earlier = seen[resolved.key] {
                    refuse("fdb: \(entry.mac) vlan \(resolved.key.vlan) is listed twice"
                           + (earlier.line.map { " (also at line \($0))" } ?? ""))
                } else {
                    seen[resolved.key] = entry
                }
            }
        }
        return errors
    }

    /// `refusals` as an error, for callers that stop at the first bad config.
    public func validate(file: String) throws(ConfigErrors) {
        let errors = refusals(file: file)
        if !errors.isEmpty { throw ConfigErrors(errors) }
    }
}
