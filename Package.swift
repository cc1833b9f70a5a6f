// swift-tools-version: 6.1
import PackageDescription

// Release builds keep Swift's safety checks on; the data path avoids them by
// working through pointers whose bounds were validated once per burst.
let hotPathFlags: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "Ferry",
    // No `platforms:`: Ferry is Linux only (vhost-user, TAP, AF_XDP, io_uring), and the list
    // names only Apple platforms, which would build none of it.
    products: [
        .executable(name: "ferry", targets: ["ferry"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),  // LogEvent, which StandardErrorLogHandler implements
        // The metrics endpoint's registry and text encoder (Prometheus exposition format 0.0.4).
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/ordo-one/malloc-interposer", from: "1.6.0"),
        // The config file: its Node API keeps every node's line and column, so an error in
        // what a value means (not only in the syntax) still points at the file position.
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        // Microbenchmarks (`swift package benchmark`). Only the malloc-counting trait: on
        // Linux with Swift 6.3 the default traits also want ordo-one/swift-runtime-interposer,
        // which the package mirror here does not carry.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: ["MallocInterposer"]),
    ],
    targets: [
        // Macros, constants and struct layouts Swift cannot import. No logic.
        .target(name: "CFerry"),
        // The plain values the command line, the config file and the engine share: port specs
        // and their text form, VLAN modes, MAC addresses, socket permissions, switch options.
        // A leaf: reading a config links no port, no engine, no libbpf.
        .target(name: "Model"),
        // The one syscall layer: owned descriptors, typed errors, unix sockets with fds.
        .target(name: "Platform", dependencies: ["CFerry", "Model"], swiftSettings: hotPathFlags),
        // Guest memory, split virtqueues, the virtio-net header. Trusts nothing a guest wrote.
        .target(name: "Virtio", dependencies: ["CFerry", "Platform", "Packets"], swiftSettings: hotPathFlags),
        // The shared packet pool, packet batches, MAC addresses, counters.
        .target(name: "Packets", dependencies: ["CFerry"], swiftSettings: hotPathFlags),
        // vhost-user protocol: codec, connections, the device state machine.
        .target(name: "VhostUser", dependencies: [
            "Model", "Platform", "Virtio", "Packets",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: hotPathFlags),
        // The forwarding database (MAC learning, aging) and the flood/unicast decision.
        .target(name: "Switching", dependencies: ["CFerry", "Model", "Platform", "Packets"], swiftSettings: hotPathFlags),
        // One file per kind of port; each pulls and pushes batches.
        .target(name: "Ports", dependencies: [
            "CFerry", "Model", "Platform", "Virtio", "Packets", "VhostUser", "XDP",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: hotPathFlags),
        // Worker threads that poll ports in batches, and the control-plane thread.
        .target(name: "Engine", dependencies: [
            "CFerry", "Model", "Platform", "Packets", "Virtio", "Ports", "VhostUser", "Switching", "XDP",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: hotPathFlags),
        // libbpf and the kernel's XDP flags (pkg-config libbpf). No logic.
        .systemLibrary(name: "CBPF", pkgConfig: "libbpf", providers: [.apt(["libbpf-dev"])]),
        // Turns a compiled BPF object into a Swift source; run only by BPFObjectPlugin.
        .executableTarget(name: "BPFEmbedder"),
        // Compiles bpf/*.bpf.c with the toolchain's clang and embeds the objects.
        .plugin(name: "BPFObjectPlugin", capability: .buildTool(), dependencies: ["BPFEmbedder"]),
        // The XDP steering program on an uplink: load, attach, recognise a stale
        // or foreign program, and the maps the AF_XDP port and control plane fill.
        .target(name: "XDP", dependencies: [
            "CBPF", "Model", "Platform", "Packets",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: hotPathFlags, plugins: ["BPFObjectPlugin"]),
        // The config file: its model, the YAML reader with file:line:column errors, and
        // the difference between two configs that a reload applies.
        .target(name: "Configuration", dependencies: [
            "Model", "Platform", "Switching",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // What operators look through: captures to pcap, the metrics endpoint.
        .target(name: "Telemetry", dependencies: [
            "Model", "Platform", "Packets", "Ports", "Engine",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        // The control socket's messages: requests, replies, errors, the version `hello` agrees.
        // Plain Codable values that the server, `ferry ctl` and the tests share.
        .target(name: "ControlProtocol"),
        .executableTarget(name: "ferry", dependencies: [
            "ControlProtocol", "CFerry", "Model", "Platform", "Packets", "Ports", "Engine", "Switching", "Configuration", "XDP", "Telemetry",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // A mock driver on memfd guest memory and a mock front-end over a socketpair.
        .target(name: "TestSupport", dependencies: ["CFerry", "Model", "Platform", "Virtio", "VhostUser", "Packets",
                                            .product(name: "Logging", package: "swift-log")],
                path: "Tests/TestSupport"),
        .testTarget(name: "VirtioTests", dependencies: ["Virtio", "Packets", "Platform", "TestSupport"]),
        .testTarget(name: "VhostUserTests", dependencies: ["VhostUser", "Virtio", "Model", "Packets", "Platform", "TestSupport"]),
        .testTarget(name: "PacketsTests", dependencies: ["Packets", "Model", "TestSupport"]),
        .testTarget(name: "ModelTests", dependencies: ["Model"]),
        .testTarget(name: "SwitchingTests", dependencies: ["Switching", "Model", "Packets"]),
        .testTarget(name: "ControlProtocolTests", dependencies: ["ControlProtocol"]),
        .testTarget(name: "PlatformTests", dependencies: ["Platform", "Model", "CFerry", "TestSupport"]),
        .testTarget(name: "PortsTests", dependencies: ["Ports", "Model", "Packets", "Platform", "XDP", "TestSupport", "VhostUser", "Virtio",
                                               .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "XDPTests", dependencies: ["XDP", "Model", "CBPF", "Platform", "Packets", "TestSupport",
                                             .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "ConfigurationTests", dependencies: ["Configuration", "Model", "Platform"]),
        .testTarget(name: "TelemetryTests", dependencies: ["Telemetry", "Engine", "Model", "Packets", "Platform", "Ports",
                                                   .product(name: "Logging", package: "swift-log")]),
        // The `ferry` command line itself: every command line the docs show parses.
        .testTarget(name: "FerryTests", dependencies: [
            "ferry", "ControlProtocol", "Engine", "Model", "Packets", "Ports", "Switching", "Telemetry",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "EngineTests", dependencies: [
            "Engine", "Model", "Ports", "Virtio", "VhostUser", "Packets", "Platform", "Switching", "TestSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "MallocInterposerSwift", package: "malloc-interposer"),
        ]),

        // Data-path microbenchmarks: address translation, ring pull/release and push.
        .executableTarget(
            name: "FerryBenchmarks",
            dependencies: [
                "CFerry", "Platform", "Virtio", "Packets", "Switching", "Model", "Ports",
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/FerryBenchmarks",
            swiftSettings: hotPathFlags,
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)

// libFuzzer targets (Fuzz/): the harness library is always built, so unit tests check and
// write the seed corpora. The FerryFuzz executable only exists in a fuzzing build (tools/fuzz.sh
// sets FERRY_FUZZ=1): it has no main of its own, libFuzzer's is linked into it alone. (Not
// `--sanitize=fuzzer`, which would link libFuzzer's main into the build-tool executables too.)
package.targets.append(
    .target(name: "FerryFuzzing", dependencies: [
        "Model", "Platform", "Packets", "Virtio", "VhostUser", "Ports", "Configuration", "ControlProtocol", "TestSupport",
    ], path: "Fuzz/FerryFuzzing"))
package.targets.append(
    .testTarget(name: "FuzzingTests", dependencies: ["FerryFuzzing"]))
if Context.environment["FERRY_FUZZ"] == "1" {
    package.targets.append(.executableTarget(
        name: "FerryFuzz", dependencies: ["FerryFuzzing"], path: "Fuzz/Targets/FerryFuzz",
        swiftSettings: [.unsafeFlags(["-parse-as-library"])], linkerSettings: [.unsafeFlags(["-sanitize=fuzzer"])]))
}
