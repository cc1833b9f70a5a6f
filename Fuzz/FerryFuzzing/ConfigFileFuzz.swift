import Configuration
import Foundation
import Model
import Ports

/// The config file reader: any text, as `ferry check` or a SIGHUP reload would read it.
///
/// Input: UTF-8 text (invalid sequences become U+FFFD, as a lenient editor would save them).
///
/// Checked: a config that loads has ports whose text form is a `--port` spec for the same port
/// (what `ferry ctl show ports` and reload messages print), and comparing it with itself finds no change.
public enum ConfigFileFuzz {
    public static let target = FuzzTarget(name: "config-file", run: { run($0) }, seeds: { seeds() })

    public static func run(_ bytes: UnsafeRawBufferPointer) -> FuzzOutcome {
        let text = String(decoding: bytes, as: UTF8.self)
        let config: FerryConfig
        do throws(ConfigErrors) { config = try FerryConfig(yaml: text, file: "fuzz.yaml") } catch {
            return FuzzOutcome(refused: 1)
        }
        for port in config.ports {
            do throws(PortSpec.ParseError) {
                let again = try PortSpec(parsing: port.text)
                fuzzCheck(again.describesSamePort(as: port), "port text '\(port.text)' names another port: \(again)")
            } catch {
                fuzzCheck(false, "port text '\(port.text)' does not parse: \(error)")
            }
        }
        fuzzCheck(ConfigChange(from: config, to: config).isEmpty, "a config differs from itself: \(config.summary)")
        return FuzzOutcome(accepted: 1)
    }

    // MARK: - Seeds

    /// The documented example (every key, every port type) and a few small files.
    static func seeds() -> [(name: String, bytes: [UInt8])] {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let example = (try? Data(contentsOf: repository.appendingPathComponent("docs/ferry.example.yaml"))).map { [UInt8]($0) } ?? []
        let small = """
            ports:
              - {name: a, type: vhost, path: /tmp/a.sock, queues: 2, vlan: 10}
              - {name: b, type: tap, interface: t0, trunk: "10,20-30"}
              - {name: s, type: sink}
            """
        let flow = """
            switch: {workers: 1, cpus: "0", batch: 32, aging_time: 10}
            ports: [{name: g, type: gen, dst: "52:54:00:00:00:01", src: "52:54:00:00:00:02", size: 60, count: 5}]
            """
        return [("example", example), ("small", Array(small.utf8)), ("flow", Array(flow.utf8))]
    }
}
