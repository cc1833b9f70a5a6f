import Foundation
import MallocInterposerSwift
import Packets
import Ports
import XCTest

@testable import Engine

/// Proves the per-burst path allocates nothing. Counting mallocs needs the
/// interposer loaded before main, so the test re-runs itself in a child
/// process with LD_PRELOAD and checks what the child measured.
final class AllocationTests: XCTestCase {
    static let probeVariable = "FERRY_ALLOCATION_PROBE"

    func testForwardedBurstsAllocateNothing() throws {
        try runUnderInterposer(test: "testForwardedBurstsAllocateNothing") {
            let gen = Port.gen(GenPort(destination: MACAddress.broadcast, source: MACAddress(2, 0, 0, 0, 0, 1),
                                       frameSize: 64, count: nil))
            let sink = Port.sink(SinkPort())
            let path = ForwardingPath(source: gen, sourceQueue: 0, destination: sink, destinationQueue: 0)
            let batch = PacketBatch(capacity: 256)
            return { for _ in 0..<1000 { _ = Worker.forward(path, batch) } }
        }
    }

    /// In the parent: re-runs `test` with the interposer preloaded and asserts on
    /// the child's verdict. In the child: warms `makeBody()`'s closure up, then
    /// counts the mallocs of one more run of it.
    func runUnderInterposer(test: String, file: StaticString = #filePath, line: UInt = #line,
                            _ makeBody: () throws -> () -> Void) throws {
        if ProcessInfo.processInfo.environment[Self.probeVariable] == nil {
            let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            let lib = exe.deletingLastPathComponent().appendingPathComponent("libMallocInterposerSwift.so")
            guard FileManager.default.fileExists(atPath: lib.path) else {
                return XCTFail("malloc interposer not built at \(lib.path)", file: file, line: line)
            }
            let child = Process()
            child.executableURL = exe
            child.arguments = ["EngineTests.AllocationTests/\(test)"]
            var env = ProcessInfo.processInfo.environment
            env["LD_PRELOAD"] = lib.path
            env[Self.probeVariable] = "1"
            child.environment = env
            let out = Pipe()
            child.standardOutput = out
            child.standardError = out
            try child.run()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            child.waitUntilExit()
            XCTAssertEqual(child.terminationStatus, 0, "allocation probe failed:\n\(text)", file: file, line: line)
            XCTAssertTrue(text.contains("ALLOCATION-PROBE ok"), "no verdict from the probe:\n\(text)", file: file, line: line)
            return
        }
        let body = try makeBody()
        body()  // warm-up: lazy metadata and first-touch work happen here, not in the measured run
        // The probe must be able to fail: a deliberate allocation has to be seen.
        MallocInterposerSwift.initialize()
        MallocInterposerSwift.hook()
        let canary = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
        MallocInterposerSwift.unhook()
        canary.deallocate()
        let seen = MallocInterposerSwift.getStatistics().mallocCount
        XCTAssertGreaterThan(seen, 0, "the interposer is not counting", file: file, line: line)

        MallocInterposerSwift.initialize()
        MallocInterposerSwift.hook()
        body()
        MallocInterposerSwift.unhook()
        let stats = MallocInterposerSwift.getStatistics()
        XCTAssertEqual(stats.mallocCount, 0, "mallocs in the data path: \(stats)", file: file, line: line)
        if seen > 0 && stats.mallocCount == 0 { print("ALLOCATION-PROBE ok") }
    }
}
