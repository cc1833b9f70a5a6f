import FerryFuzzing
import Foundation
import XCTest

/// The fuzz targets' seed corpora (Fuzz/Corpus/<target>/) are what the targets' seed builders
/// write, and every input kept there — seeds and the inputs of fixed findings — runs clean.
/// `FERRY_WRITE_FUZZ_SEEDS=1 swift test --filter FuzzCorpusTests` rewrites the seeds.
final class FuzzCorpusTests: XCTestCase {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz/Corpus")

    func testEachSeedReachesTheCodeUnderTest() {
        for target in FuzzTarget.all {
            let seeds = target.seeds()
            XCTAssertFalse(seeds.isEmpty, target.name)
            for seed in seeds {
                XCTAssertFalse(seed.bytes.isEmpty, "\(target.name)/\(seed.name)")
                let outcome = seed.bytes.withUnsafeBytes { target.run($0) }
                XCTAssertGreaterThan(outcome.accepted + outcome.refused, 0, "\(target.name)/\(seed.name) did nothing")
            }
        }
    }

    /// Seeds meant to be accepted are; the ones meant to be refused are refused.
    func testSeedsAreAcceptedOrRefusedAsWritten() {
        let refusedOnPurpose: Set = ["vhost-message/truncated-descriptors", "vhost-message/bad-version",
                                     "guest-memory/overlapping", "split-ring/self-loop",
                                     "packed-ring/ring-loop"]
        for target in FuzzTarget.all {
            for seed in target.seeds() {
                let key = "\(target.name)/\(seed.name)"
                let outcome = seed.bytes.withUnsafeBytes { target.run($0) }
                if refusedOnPurpose.contains(key) {
                    XCTAssertGreaterThan(outcome.refused, 0, key)
                } else {
                    XCTAssertGreaterThan(outcome.accepted, 0, key)
                }
            }
        }
    }

    func testTheCorpusHoldsTheSeeds() throws {
        let write = ProcessInfo.processInfo.environment["FERRY_WRITE_FUZZ_SEEDS"] == "1"
        for target in FuzzTarget.all {
            let directory = Self.corpus.appendingPathComponent(target.name)
            if write { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) }
            for seed in target.seeds() {
                let file = directory.appendingPathComponent("seed-\(seed.name)")
                if write { try Data(seed.bytes).write(to: file) }
                let stored = try? Data(contentsOf: file)
                XCTAssertEqual(stored.map { [UInt8]($0) }, seed.bytes,
                               "\(file.path) is stale; FERRY_WRITE_FUZZ_SEEDS=1 swift test --filter FuzzCorpusTests rewrites it")
            }
        }
    }

    /// Seeds and the inputs of fixed findings: each runs without a finding (a finding ends the process).
    func testEveryKeptInputRunsClean() throws {
        for target in FuzzTarget.all {
            let directory = Self.corpus.appendingPathComponent(target.name)
            let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            XCTAssertFalse(files.isEmpty, directory.path)
            for name in files {
                let bytes = try Data(contentsOf: directory.appendingPathComponent(name))
                _ = bytes.withUnsafeBytes { target.run($0) }
            }
        }
    }
}
