import ArgumentParser
import XCTest
@testable import ferry

/// `ferry run` and `ferry lab` take the runtime options from one `RuntimeOptions`: the same
/// names, the same refusals, the same help text in both.
final class RuntimeOptionsTests: XCTestCase {
    let given = ["--workers", "2", "--cpus", "0-1", "--batch", "64", "--idle", "poll", "--wake-priority", "normal", "--control", "/tmp/x.sock",
                 "--metrics", "127.0.0.1:9469", "--log-level", "debug"]

    func testBothCommandsTakeTheSameOptionsIntoTheSameSettings() throws {
        let run = try Run.parse(["--port", "sink"] + given)
        let lab = try Lab.parse(["throughput", "--port", "gen:size=64", "--port", "sink"] + given)
        for runtime in [run.runtime, lab.runtime] {
            XCTAssertEqual(runtime.workers, 2)
            XCTAssertEqual(try RuntimeOptions.cpuList(try XCTUnwrap(runtime.cpus)), [0, 1])
            XCTAssertEqual(runtime.batch, 64)
            XCTAssertEqual(runtime.idle, .poll)
            XCTAssertEqual(runtime.wakePriority, .normal)
            XCTAssertEqual(runtime.logLevel, "debug")
            XCTAssertEqual(runtime.control, "/tmp/x.sock")
            XCTAssertEqual(runtime.metrics, "127.0.0.1:9469")
        }
    }

    func testBothCommandsRefuseTheSameValues() {
        for bad in [["--batch", "16"], ["--workers", "0"], ["--cpus", "x"], ["--cpu", "0", "--cpus", "1"],
                    ["--log-level", "loud"], ["--metrics", "nowhere"], ["--wake-priority", "high"]] {
            XCTAssertThrowsError(try Run.parse(["--port", "sink"] + bad), "run \(bad)")
            XCTAssertThrowsError(try Lab.parse(["ndr", "--port", "gen:size=64", "--port", "sink"] + bad), "lab \(bad)")
        }
    }

    func testTheHelpOfBothShowsEveryRuntimeOptionWithOneText() {
        let run = Run.helpMessage(columns: 1000), lab = Lab.helpMessage(columns: 1000)
        for option in ["--cpu <cpu>", "--workers <workers>", "--cpus <cpus>", "--batch <batch>", "--idle <policy>",
                       "--wake-priority <class>", "--control <path>", "--metrics <addr:port>", "--log-level <log-level>"] {
            let runLine = run.split(separator: "\n").first { $0.contains(option) }
            XCTAssertNotNil(runLine, "ferry run --help lacks \(option)")
            XCTAssertEqual(runLine, lab.split(separator: "\n").first { $0.contains(option) }, option)
        }
    }
}
