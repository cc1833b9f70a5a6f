import Logging
import Packets
import Ports
import XCTest

@testable import Engine
@testable import Telemetry

/// A small reader of Prometheus' text format 0.0.4
/// (prometheus.io/docs/instrumenting/exposition_formats): enough to check
/// that what Ferry serves parses, and to read values back.
struct PrometheusText {
    struct Sample: Hashable {
        let name: String
        let labels: [String: String]
        let value: Double
    }

    var samples: [Sample] = []
    var types: [String: String] = [:]

    init(_ text: String) throws {
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) where !line.isEmpty {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                    throw ParseError("bad TYPE line: \(line)")
                }
                guard types[String(parts[2])] == nil else { throw ParseError("second TYPE for \(parts[2])") }
                types[String(parts[2])] = String(parts[3])
                continue
            }
            if line.hasPrefix("#") { continue }
            samples.append(try Self.sample(String(line)))
        }
        for s in samples where types[s.name] == nil { throw ParseError("\(s.name) has no TYPE line") }
    }

    static func sample(_ line: String) throws -> Sample {
        var rest = Substring(line)
        let name = rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" }
        guard let first = name.first, !first.isNumber else { throw ParseError("bad metric name: \(line)") }
        rest = rest.dropFirst(name.count)
        var labels: [String: String] = [:]
        if rest.first == "{" {
            rest = rest.dropFirst()
            while rest.first != "}" {
                let key = rest.prefix { $0 != "=" }
                rest = rest.dropFirst(key.count)
                guard rest.hasPrefix("=\"") else { throw ParseError("bad label in: \(line)") }
                rest = rest.dropFirst(2)
                var value = ""
                while let c = rest.first, c != "\"" {
                    if c == "\\" { rest = rest.dropFirst(); value.append(rest.first ?? "?") } else { value.append(c) }
                    rest = rest.dropFirst()
                }
                guard rest.first == "\"" else { throw ParseError("unterminated label value: \(line)") }
                rest = rest.dropFirst()
                labels[String(key)] = value
                if rest.first == "," { rest = rest.dropFirst() }
                guard !rest.isEmpty else { throw ParseError("unterminated labels: \(line)") }
            }
            rest = rest.dropFirst()
        }
        guard rest.first == " ", let value = Double(rest.dropFirst()) else { throw ParseError("bad value: \(line)") }
        return Sample(name: String(name), labels: labels, value: value)
    }

    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }

    struct ParseError: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }
}

final class MetricsExpositionTests: XCTestCase {
    func makeSwitch() throws -> Switch { try threePortSwitch(generating: 300) }

    func testTheTextParsesAndMatchesTheCounters() throws {
        let sw = try makeSwitch()
        let worker = sw.workers[0]
        let batch = PacketBatch(capacity: 256)
        while worker.forwardOnce(batch) > 0 {}
        sw.port(named: "s")!.port.counters(queue: 0).dropped(.noRxBuffer, 7)
        let captures = CaptureService(switch: sw, logger: Logger(label: "test"))
        let text = String(decoding: MetricsExposition.render(sw, captures: captures), as: UTF8.self)
        let metrics = try PrometheusText(text)

        XCTAssertEqual(metrics.types["ferry_port_rx_packets_total"], "counter")
        XCTAssertEqual(metrics.types["ferry_fdb_entries"], "gauge")
        for p in sw.ports {
            let s = p.port.counters(queue: 0).snapshot
            let labels = ["port": p.name, "queue": "0"]
            XCTAssertEqual(metrics.value("ferry_port_rx_packets_total", labels), Double(s.rxPackets), p.name)
            XCTAssertEqual(metrics.value("ferry_port_rx_bytes_total", labels), Double(s.rxBytes), p.name)
            XCTAssertEqual(metrics.value("ferry_port_tx_packets_total", labels), Double(s.txPackets), p.name)
            XCTAssertEqual(metrics.value("ferry_port_tx_bytes_total", labels), Double(s.txBytes), p.name)
            for reason in DropReason.allCases {
                XCTAssertEqual(metrics.value("ferry_port_dropped_total", labels.merging(["reason": reason.name]) { $1 }),
                               Double(s.drops[reason] ?? 0), "\(p.name) \(reason.name)")
            }
        }
        XCTAssertEqual(metrics.value("ferry_port_rx_packets_total", ["port": "g", "queue": "0"]), 300)
        XCTAssertEqual(metrics.value("ferry_port_tx_packets_total", ["port": "t", "queue": "0"]), 300)
        XCTAssertEqual(metrics.value("ferry_port_dropped_total", ["port": "s", "queue": "0", "reason": "no_rx_buffer"]), 7)
        XCTAssertEqual(metrics.value("ferry_forwarding_decisions_total", ["decision": "flooded"]),
                       Double(sw.decisions.flooded))
        XCTAssertEqual(metrics.value("ferry_worker_busy_loops_total", ["worker": "0"]),
                       Double(worker.busyLoops.load(ordering: .relaxed)))
        XCTAssertNotNil(metrics.value("ferry_worker_asleep_seconds_total", ["worker": "0"]))
        XCTAssertEqual(metrics.value("ferry_fdb_capacity"), Double(sw.database.capacity))
        XCTAssertEqual(metrics.value("ferry_captures"), 0)
        XCTAssertEqual(metrics.value("ferry_capture_dropped_total", ["port": "s", "direction": "tx", "reason": "ring_full"]), 0)
        XCTAssertEqual(metrics.value("ferry_port_info", ["port": "t", "kind": "sink", "vlan": "trunk 1"]), 1)
    }

    func testTheReaderRefusesWhatIsNotExpositionText() {
        XCTAssertThrowsError(try PrometheusText("ferry_x 1\n"))
        XCTAssertThrowsError(try PrometheusText("# TYPE ferry_x counter\nferry_x{a=\"1\" 1\n"))
        XCTAssertThrowsError(try PrometheusText("# TYPE ferry_x counter\nferry_x one\n"))
    }
}
