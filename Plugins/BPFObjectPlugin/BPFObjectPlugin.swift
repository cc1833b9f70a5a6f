import Foundation
import PackagePlugin

/// Compiles every `bpf/*.bpf.c` of the package with the toolchain's clang
/// (`-target bpf`) and embeds each object in the target it is applied to as a
/// generated Swift source, so the program travels inside the binary: nothing
/// to install, no path to look up at run time, and an edit to the C source
/// rebuilds it like any other source.
@main
struct BPFObjectPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let sourceDirectory = context.package.directoryURL.appending(path: "bpf")
        let files = try FileManager.default.contentsOfDirectory(at: sourceDirectory, includingPropertiesForKeys: nil)
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
        let programs = files.filter { $0.lastPathComponent.hasSuffix(".bpf.c") }
        // A program may include a header of its own next to it; clang's depfile
        // cannot reach llbuild from a plugin, so every header counts as an input.
        let headers = files.filter { $0.pathExtension == "h" }
        let clang = try context.tool(named: "clang")
        let embedder = try context.tool(named: "BPFEmbedder")

        return programs.map { source in
            let stem = String(source.lastPathComponent.dropLast(".bpf.c".count))
            // The object is an intermediate of the one command: declared as an
            // output, it would become a resource bundle of the target.
            let object = context.pluginWorkDirectoryURL.appending(path: "\(stem).bpf.o")
            let generated = context.pluginWorkDirectoryURL.appending(path: "\(stem).bpf.swift")
            // -g: libbpf needs the BTF it produces to read the SEC(".maps") definitions.
            let compile = ["-target", "bpf", "-O2", "-g", "-Wall"]
                + Self.architectureIncludes().flatMap { ["-I", $0] }
                + ["-c", source.path]
            return .buildCommand(displayName: "Compiling and embedding BPF program \(source.lastPathComponent)",
                                 executable: embedder.url,
                                 arguments: [clang.url.path, object.path, generated.path, stem, "--"] + compile,
                                 inputFiles: [source] + headers, outputFiles: [generated])
        }
    }

    /// <linux/types.h> includes <asm/types.h>, which Debian installs under the
    /// multiarch directory (/usr/include/x86_64-linux-gnu) that clang only
    /// searches for a Linux target, not for `-target bpf`. The build host's
    /// own directory comes first; the kernel's asm-generic types are the same
    /// on every architecture Ferry builds on.
    static func architectureIncludes() -> [String] {
        #if arch(x86_64)
        let preferred = "x86_64-linux-gnu"
        #elseif arch(arm64)
        let preferred = "aarch64-linux-gnu"
        #else
        let preferred = ""
        #endif
        let root = URL(filePath: "/usr/include")
        let candidates = ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? [])
            .filter { $0.contains("-linux-") }
            .sorted { ($0 == preferred ? 0 : 1, $0) < ($1 == preferred ? 0 : 1, $1) }
        let found = candidates.first {
            FileManager.default.fileExists(atPath: root.appending(path: "\($0)/asm/types.h").path)
        }
        return found.map { [root.appending(path: $0).path] } ?? []
    }
}
