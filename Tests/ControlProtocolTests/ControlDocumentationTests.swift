import ControlProtocol
import Foundation
import XCTest

/// docs/CONTROL.md against the types: every command, field and refusal the types have is
/// documented, and every field the document shows exists.
final class ControlDocumentationTests: XCTestCase {
    private static let document: String = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return (try? String(contentsOf: root.appendingPathComponent("docs/CONTROL.md"), encoding: .utf8)) ?? ""
    }()

    /// Fields whose value is a map from names to numbers: its keys are data, not fields.
    private static let maps: Set<String> = ["drops"]

    // MARK: - What the types say

    /// One of each request, every optional field given.
    private static let requests: [ControlRequest] = [
        .hello(version: 1), .stats, .statsClear, .show(.ports),
        .fdbAdd(mac: "52:54:00:12:34:56", port: "vm0", vlan: 10), .fdbDel(mac: "52:54:00:12:34:56", vlan: 10),
        .fdbFlush(FDBFlushFilter(port: "vm0", vlan: 10, includingStatic: true)), .portAdd(spec: "sink"), .portDel(name: "s"),
        .capture(CaptureParameters(port: "vm0", direction: .rx, count: 1, snapLength: 64)),
    ]

    private static let traffic = TrafficCounters(rxPackets: 1, rxBytes: 64, txPackets: 0, txBytes: 0,
                                                 drops: ["no_rx_buffer": 1], offloads: ["gso_passed": 1])
    private static let port = PortInfo(
        name: "up", index: 0, kind: "xdp", state: "running", vlan: "access 1", mode: "access", vlans: [1], queues: 1,
        spec: "xdp:eth0,name=up",
        steering: SteeringInfo(programID: 7, attach: "native", sockets: "copy", steered: 1, passed: 2, malformed: 0,
                               addresses: 1, zeroCopyFallback: "the driver has no zero-copy"))
    private static let fdbCounters = FDBCountersInfo(entries: 1, learned: 1, moves: 0, overflows: 0, aged: 0,
                                                     capacity: 65536, agingTime: 300)

    /// One of each reply, every optional field given (testRepliesLeaveNoFieldOut checks).
    private static let replies: [any Encodable & Sendable] = [
        HelloReply(version: 1, ferry: "0.1.0"),
        OKReply(),
        FDBFlushReply(removed: 3),
        PortChangeReply(port: port),
        PortsReply(ports: [port]),
        FDBReply(fdb: [FDBEntryInfo(mac: "02:00:00:00:00:01", vlan: 1, port: "g", isStatic: true, age: 0,
                                    vtep: "198.18.0.2", evpn: true)],
                 counters: fdbCounters),
        VTEPsReply(vteps: [VTEPInfo(port: "vx", vni: 100, address: "198.18.0.2", flood: true, rxPackets: 1, rxBytes: 64,
                                    txPackets: 1, txBytes: 64)]),
        StatsReply(ports: [PortStatistics(name: "g", kind: "gen", spec: "gen:...", state: "running", traffic: traffic,
                                          queues: [QueueStatistics(queue: 0, traffic: traffic)],
                                          rates: PortRates(rxPPS: 1, rxBPS: 512, txPPS: 0, txBPS: 0, dropsPPS: 0,
                                                           interval: 1),
                                          analysis: AnalysisStatistics(
                                            stamped: 1, unstamped: 0, lost: 0, reordered: 0, duplicates: 0, late: 0,
                                            foreign: 0,
                                            latency: LatencyStatistics(count: 1, mean: 900, p50: 900, p99: 900,
                                                                       p999: 900, max: 900),
                                            flows: [FlowStatistics(flow: 0, frames: 1, bytes: 64, lost: 0, reordered: 0,
                                                                   duplicates: 0, late: 0, latencyMean: 900,
                                                                   latencyMax: 900)]),
                                          generator: GeneratorStatistics(sent: 1, lagged: 0, rate: 1000))],
                   workers: [WorkerStatistics(id: 0, cpu: 2, busyLoops: 1, idleLoops: 1, sleeps: 1,
                                              asleepNanoseconds: 1, learningOverflows: 0, senderMoves: 0)],
                   switch: SwitchStatistics(unicast: 0, flooded: 1, hairpin: 0, fdb: fdbCounters),
                   elapsed: 42.5, cleared: false),
        ErrorReply(error: "no port is named 'nope'"),
    ]

    /// Every refusal, with the values docs/CONTROL.md's examples use.
    private static let errors: [ControlError] = [
        .notAnObject, .tooLong(limit: 65536), .tooManyConnections(limit: 64), .captureNotAlone,
        .missingField("cmd"), .missingField("what", choices: ShowTarget.allCases.map(\.rawValue)), .notAString("cmd"),
        .notAWholeNumber("vlan", ControlProtocol.vlanIDs), .notAWholeNumber("version"), .notABoolean("static"),
        .badID,
        .unknownCommand("flush"), .unknownShowTarget("routes"), .unknownPortOperation("move"),
        .unknownDirection("in"), .vlanOutOfRange(4095), .unsupportedVersion(0),
        .notAMACAddress("02:00:00:00:00"), .groupAddress("01:00:5e:00:00:01"), .nullAddress("00:00:00:00:00:00"),
        .vlanNotCarried(port: "s", vlan: 10, mode: "access 1"), .trunkNeedsVLAN(port: "t", mode: "trunk 10,20"),
        .databaseFull(capacity: 65536), .noEntry(mac: "52:54:00:12:34:56", vlan: 10),
        .controlSocketAsPort(spec: "vhost:/run/ferry/ferry.sock", path: "/run/ferry/ferry.sock"),
        .refused("no port is named 'nope'"),
    ]

    /// Which case an error is; no `default`, so a new case does not compile until it is counted.
    private static func caseNumber(_ error: ControlError) -> Int {
        switch error {
        case .notAnObject: 0
        case .tooLong: 1
        case .tooManyConnections: 2
        case .captureNotAlone: 3
        case .missingField: 4
        case .notAString: 5
        case .notAWholeNumber: 6
        case .notABoolean: 7
        case .badID: 8
        case .unknownCommand: 9
        case .unknownShowTarget: 10
        case .unknownPortOperation: 11
        case .unknownDirection: 12
        case .vlanOutOfRange: 13
        case .unsupportedVersion: 14
        case .notAMACAddress: 15
        case .groupAddress: 16
        case .nullAddress: 17
        case .vlanNotCarried: 18
        case .trunkNeedsVLAN: 19
        case .databaseFull: 20
        case .noEntry: 21
        case .controlSocketAsPort: 22
        case .refused: 23
        }
    }

    private static func keys(of value: some Encodable) throws -> Set<String> {
        let object = try JSONSerialization.jsonObject(with: ControlCodec.encoder().encode(value))
        var keys = Set<String>()
        func walk(_ node: Any) {
            if let dictionary = node as? [String: Any] {
                for (key, child) in dictionary {
                    keys.insert(key)
                    if !maps.contains(key) { walk(child) }
                }
            } else if let array = node as? [Any] {
                array.forEach(walk)
            }
        }
        walk(object)
        return keys
    }

    private static func requestFields() throws -> Set<String> {
        try requests.reduce(into: Set(["id"])) { fields, request in fields.formUnion(try keys(of: request)) }
    }

    private static func replyFields() throws -> Set<String> {
        try replies.reduce(into: Set(["id"])) { fields, reply in fields.formUnion(try keys(of: reply)) }
    }

    // MARK: - What the document says

    /// The keys of the JSON objects in the document's ```json blocks.
    private static func documentedKeys() -> Set<String> {
        var keys = Set<String>()
        var inJSON = false
        for line in document.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") {
                inJSON = line == "```json"
                continue
            }
            guard inJSON else { continue }
            keys.formUnion(line.matches(of: /"([A-Za-z_]+)"\s*:/).map { String($0.output.1) })
        }
        return keys
    }

    /// The fields named in the first column of the tables headed `| Field |`.
    private static func documentedRequestFields() -> Set<String> {
        var fields = Set<String>()
        var inFieldTable = false
        for line in document.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("| Field |") { inFieldTable = true; continue }
            guard line.hasPrefix("|") else { inFieldTable = false; continue }
            if inFieldTable, let name = line.firstMatch(of: /^\| `([a-z_]+)`/) { fields.insert(String(name.output.1)) }
        }
        return fields
    }

    private static func mentions(_ name: String) -> Bool {
        document.contains("`\(name)`") || document.contains("\"\(name)\"")
    }

    // MARK: - The checks

    func testTheDocumentIsThere() {
        XCTAssertTrue(Self.document.hasPrefix("# The control socket"), "docs/CONTROL.md not found or renamed")
    }

    func testEveryCommandHasItsSection() {
        let sections = Set(Self.document.matches(of: /\n## `([a-z-]+)`/).map { String($0.output.1) })
        XCTAssertEqual(sections, Set(ControlCommand.allCases.map(\.rawValue)))
        let shown = Set(Self.document.matches(of: /"cmd":"([a-z-]+)"/).map { String($0.output.1) })
        XCTAssertEqual(shown, Set(ControlCommand.allCases.map(\.rawValue)), "a request example names no command")
        for what in ShowTarget.allCases { XCTAssertTrue(Self.document.contains(#""what":"\#(what.rawValue)""#)) }
        for op in PortOperation.allCases { XCTAssertTrue(Self.document.contains(#""op":"\#(op.rawValue)""#)) }
        for direction in CaptureDirection.allCases { XCTAssertTrue(Self.mentions(direction.rawValue), "\(direction)") }
    }

    func testEveryFieldOfTheTypesIsDocumented() throws {
        for field in try Self.requestFields().union(Self.replyFields()).sorted() {
            XCTAssertTrue(Self.mentions(field), "docs/CONTROL.md never names the field \(field)")
        }
    }

    func testEveryDocumentedFieldIsInTheTypes() throws {
        let known = try Self.requestFields().union(Self.replyFields())
        XCTAssertEqual(Self.documentedKeys().subtracting(known), [], "JSON examples show fields no type has")
        XCTAssertFalse(Self.documentedRequestFields().isEmpty)
        XCTAssertEqual(Self.documentedRequestFields().subtracting(try Self.requestFields()), [],
                       "field tables name fields no request has")
    }

    func testEveryRefusalIsDocumentedWordForWord() {
        let cases = Set(Self.errors.map(Self.caseNumber))
        XCTAssertEqual(cases, Set(0...cases.max()!), "a ControlError case has no example here")
        for error in Self.errors {
            let text = error.description
            let escaped = text.replacingOccurrences(of: "\"", with: "\\\"")
            XCTAssertTrue(Self.document.contains(text) || Self.document.contains(escaped),
                          "docs/CONTROL.md does not give the error \(text)")
        }
    }

    /// The samples above leave no optional field out, so no field escapes the checks.
    func testRepliesLeaveNoFieldOut() {
        func assertNoNil(_ value: Any, _ path: String) {
            let mirror = Mirror(reflecting: value)
            if mirror.displayStyle == .optional {
                guard let wrapped = mirror.children.first else { return XCTFail("\(path) is nil in the sample") }
                return assertNoNil(wrapped.value, path)
            }
            for (n, child) in mirror.children.enumerated() {
                assertNoNil(child.value, "\(path).\(child.label ?? String(n))")
            }
        }
        for reply in Self.replies { assertNoNil(reply, "\(type(of: reply))") }
        for request in Self.requests { assertNoNil(request, "\(request.command)") }
    }
}
