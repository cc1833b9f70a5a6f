import ArgumentParser
import Configuration
import Foundation

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a config file without starting anything.",
        discussion: """
            Reads the file as `ferry run --config` would and refuses exactly what it would
            refuse before opening anything (one validator serves both): every mistake as
            FILE:LINE:COLUMN: what is wrong (FILE: what is wrong for the file as a whole), on
            stderr, exit status 1; a good file prints one line, exit status 0. Opens no
            socket, TAP or interface: a port whose interface is missing passes here and
            fails when the switch starts (exit status 69).
            Example: ferry check /etc/ferry/ferry.yaml
            """)

    @Argument(help: "The config file (YAML; see docs/CONFIG.md).")
    var file: String

    @Flag(help: "Print the result as one JSON object on stdout, good or bad.")
    var json = false

    func run() throws {
        // Completed by `ferry run`'s own code with an empty command line (the default
        // control socket path, for one), then validated as `ferry run` validates.
        let bareRun = try Run.parse([])
        let config: FerryConfig
        do throws(ConfigErrors) {
            config = bareRun.completed(try FerryConfig.load(path: file), commandLinePorts: [])
            try config.validate(file: file)
        } catch {
            if json {
                try printJSON(["ok": false, "file": file, "errors": error.errors.map { e in
                    ["line": e.line.map { $0 as Any } ?? NSNull(), "column": e.column.map { $0 as Any } ?? NSNull(),
                     "message": e.message, "text": e.description] as [String: Any]
                }])
            } else {
                FileHandle.standardError.write(Data((error.description + "\n").utf8))
            }
            throw ExitStatus.configRefused
        }
        if json {
            try printJSON(["ok": true, "file": file, "ports": config.ports.map { p in
                ["name": p.name ?? "", "type": p.kindName, "spec": p.text]
            }])
        } else {
            print("ok: \(config.summary)")
        }
    }

    private func printJSON(_ object: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        print(String(decoding: data, as: UTF8.self))
    }
}
