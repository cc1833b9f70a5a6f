import Foundation
import Logging
import XCTest
@testable import ferry

final class LogFormatTests: XCTestCase {
    func testAutoIsJournalOnlyWhenStderrIsTheJournalsStream() {
        let stderr: (dev: UInt64, inode: UInt64) = (dev: 8, inode: 12345)
        XCTAssertEqual(LogFormat.auto.resolved(environment: "8:12345", standardError: stderr), .journal)
        XCTAssertEqual(LogFormat.auto.resolved(environment: "8:99", standardError: stderr), .text,
                       "stderr was redirected after systemd set JOURNAL_STREAM")
        XCTAssertEqual(LogFormat.auto.resolved(environment: nil, standardError: stderr), .text)
        XCTAssertEqual(LogFormat.auto.resolved(environment: "garbage", standardError: stderr), .text)
        XCTAssertEqual(LogFormat.json.resolved(environment: "8:12345", standardError: stderr), .json)
        XCTAssertEqual(LogFormat.text.resolved(environment: "8:12345", standardError: stderr), .text)
    }

    func testJournalLinesCarryTheSyslogPriority() {
        func line(_ level: Logger.Level) -> String {
            StandardErrorLogHandler.line(format: .journal, label: "ferry", level: level, message: "m", metadata: [:],
                                         time: Date(timeIntervalSince1970: 0))
        }
        XCTAssertEqual(line(.critical), "<2>ferry: m")
        XCTAssertEqual(line(.error), "<3>ferry: m")
        XCTAssertEqual(line(.warning), "<4>ferry: m")
        XCTAssertEqual(line(.notice), "<5>ferry: m")
        XCTAssertEqual(line(.info), "<6>ferry: m")
        XCTAssertEqual(line(.debug), "<7>ferry: m")
    }

    func testJSONLinesAreOneObjectEach() throws {
        let text = StandardErrorLogHandler.line(format: .json, label: "ferry", level: .warning, message: "a \"quoted\"\nline",
                                                metadata: ["port": "vm0"], time: Date(timeIntervalSince1970: 1.5))
        XCTAssertFalse(text.contains("\n"))
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        XCTAssertEqual(object["message"] as? String, "a \"quoted\"\nline")
        XCTAssertEqual(object["level"] as? String, "warning")
        XCTAssertEqual(object["priority"] as? Int, 4)
        XCTAssertEqual(object["port"] as? String, "vm0")
        XCTAssertEqual(object["time"] as? String, "1970-01-01T00:00:01.500Z")
    }

    func testTextLines() {
        XCTAssertEqual(StandardErrorLogHandler.line(format: .text, label: "ferry", level: .info, message: "ready",
                                                    metadata: ["a": "1"], time: Date(timeIntervalSince1970: 0)),
                       "1970-01-01T00:00:00.000Z info ferry: ready a=1")
    }
}
