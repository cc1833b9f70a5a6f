import Foundation
import Model
import Platform
import TestSupport
import XCTest

@testable import Engine

/// A worker given a CPU (`cpus`) runs there, and a CPU Ferry may not run on
/// is named in the log when the switch starts, not silently ignored.
final class WorkerPinningTests: XCTestCase {
    private func makeSwitch(cpus: [Int], log: CapturedLog) throws -> Switch {
        var options = SwitchOptions()
        options.cpus = cpus
        options.batchSize = 64
        options.fdbCapacity = 64
        return try Switch(specs: [try PortSpec(parsing: "sink:name=s")], options: options, logger: log.logger)
    }

    /// The CPUs the kernel lets the thread `tid` run on, as /proc prints them ("0" or "0-1").
    private func allowedList(ofThread tid: Int32) throws -> String {
        let status = try String(contentsOfFile: "/proc/self/task/\(tid)/status", encoding: .utf8)
        let line = try XCTUnwrap(status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") })
        return line.split(separator: "\t").last.map(String.init) ?? ""
    }

    func testAPinnedWorkerRunsOnItsCPU() throws {
        let here = try XCTUnwrap(ThreadAffinity.currentCPU(), "sched_getcpu failed")
        let log = CapturedLog()
        let sw = try makeSwitch(cpus: [here], log: log)
        sw.start()
        defer { sw.stop() }
        let worker = sw.workers[0]
        let deadline = Date().addingTimeInterval(5)
        while worker.threadID.load(ordering: .relaxed) == 0 && Date() < deadline { usleep(1_000) }
        let tid = worker.threadID.load(ordering: .relaxed)
        XCTAssertNotEqual(tid, 0, "the worker thread did not start within 5 s")
        // The thread records its id before it pins itself: wait for the pin.
        var list = try allowedList(ofThread: tid)
        while list != "\(here)" && Date() < deadline {
            usleep(1_000)
            list = try allowedList(ofThread: tid)
        }
        XCTAssertEqual(list, "\(here)")
        XCTAssertFalse(log.lines.contains { $0.contains("cpus:") }, "\(log.lines)")
    }

    func testACPUFerryMayNotRunOnIsLoggedAtStart() throws {
        // CPU 1023: the last one a mask holds, on no machine this test runs on.
        let allowed = try XCTUnwrap(ThreadAffinity.allowed(), "sched_getaffinity failed")
        XCTAssertFalse(allowed.contains(1023))
        let log = CapturedLog()
        let sw = try makeSwitch(cpus: [1023], log: log)
        sw.start()
        sw.stop()
        XCTAssertEqual(log.lines.filter { $0.contains("cpus: CPU 1023 is not one Ferry may run on") }.count, 1,
                       "\(log.lines)")
    }
}
