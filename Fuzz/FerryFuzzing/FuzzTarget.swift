/// One libFuzzer target: a thin decoder from bytes to operations on Ferry's own code
/// (or the test mocks), with the seeds the unit tests write into Fuzz/Corpus/<name>/.
public struct FuzzTarget: Sendable {
    /// The corpus directory's name and the FERRY_FUZZ_TARGET value that selects it.
    public let name: String
    /// Runs one input; a broken property ends the process (see `fuzzCheck`).
    public let run: @Sendable (UnsafeRawBufferPointer) -> FuzzOutcome
    /// Inputs that reach the interesting paths, by file name.
    public let seeds: @Sendable () -> [(name: String, bytes: [UInt8])]

    /// Every target, in the order tools/fuzz.sh runs them.
    public static let all: [FuzzTarget] = [
        VhostMessageFuzz.target, GuestMemoryFuzz.target, SplitRingFuzz.target, PackedRingFuzz.target,
        ConfigFileFuzz.target, ControlRequestFuzz.target,
    ]

    public static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }
}

/// What one input did, so the unit tests can check that each seed reaches what it was written for.
public struct FuzzOutcome: Equatable, Sendable {
    /// Operations the code under test accepted (messages decoded, translations, frames moved, files read).
    public var accepted = 0
    /// Operations it refused with an error of its own.
    public var refused = 0

    public init(accepted: Int = 0, refused: Int = 0) {
        self.accepted = accepted
        self.refused = refused
    }
}
