import ArgumentParser
import Foundation
import Glibc
import Platform
import XDP

/// Ferry's version: the one place it is written. Bump it with a release.
enum FerryVersion {
    static let number = "0.1.0"
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print Ferry's version and what it runs on (kernel, libbpf).",
        discussion: """
            The kernel and libbpf versions decide which XDP and AF_XDP features an uplink
            gets; quote this output in a bug report.
            Example: ferry version --json
            """)

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let info = Self.facts()
        if json {
            let data = try JSONSerialization.data(withJSONObject: info, options: [.sortedKeys])
            return print(String(decoding: data, as: UTF8.self))
        }
        print("ferry \(FerryVersion.number)")
        print("kernel \(info["kernel"] ?? "") (\(info["machine"] ?? ""))")
        print("libbpf \(info["libbpf"] ?? "")")
    }

    static func facts() -> [String: String] {
        let name = SystemName.current()
        return ["version": FerryVersion.number, "kernel": "\(name.system) \(name.release)",
                "machine": name.machine, "libbpf": LibbpfVersion.string]
    }
}
