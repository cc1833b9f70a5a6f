import ControlProtocol
import Engine
import Foundation
import Logging
import Model
import Packets
import Ports
import Switching
import Telemetry
import XCTest
@testable import ferry

/// `fdb-flush`, `stats-clear` and the rates, through the control server's own reply path,
/// on a switch whose counters the test moves by hand (no workers run).
final class ControlVerbsTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-verbs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func makeServer() throws -> (ControlServer, Switch) {
        let sw = try Switch(specs: [
            PortSpec(parsing: "gen:dst=02:00:00:00:00:02,src=02:00:00:00:00:01,size=64,count=1,name=g"),
            PortSpec(parsing: "sink:name=s"),
            PortSpec(parsing: "sink:name=t,trunk=10,20"),
        ], logger: Logger(label: "test"))
        let logger = Logger(label: "test")
        let server = try ControlServer(path: directory.appendingPathComponent("ferry.sock").path, switch: sw,
                                       captures: CaptureService(switch: sw, logger: logger), logger: logger)
        addTeardownBlock { server.close() }
        return (server, sw)
    }

    private func call<Reply: Decodable & Sendable>(_ server: ControlServer, _ line: String,
                                                  as type: Reply.Type) throws -> Reply {
        let reply = server.reply(to: ControlCodec.decodeRequest(Array(line.utf8)))
        return try ControlCodec.decodeReply(reply.dropLast(), as: type).body.get()
    }

    private func refusal(_ server: ControlServer, _ line: String) throws -> String? {
        let reply = server.reply(to: ControlCodec.decodeRequest(Array(line.utf8)))
        guard case .failure(let error) = try ControlCodec.decodeReply(reply.dropLast(), as: OKReply.self).body else {
            return nil
        }
        return error.error
    }

    private func port(_ sw: Switch, _ name: String) -> QueueCounters { sw.port(named: name)!.port.counters(queue: 0) }

    func testFlushRemovesLearnedEntriesByPortAndVLANAndStaticOnlyWhenAsked() throws {
        let (server, sw) = try makeServer()
        let db = sw.database
        let g = sw.port(named: "g")!.index, s = sw.port(named: "s")!.index, t = sw.port(named: "t")!.index
        for n in UInt64(1)...4 { db.learn(vlan: 1, mac: 0x0200_0000_0000 | n, port: n % 2 == 0 ? g : s, now: 1) }
        db.learn(vlan: 10, mac: 0x0200_0000_0010, port: t, now: 1)
        db.learn(vlan: 20, mac: 0x0200_0000_0020, port: t, now: 1)
        XCTAssertTrue(db.addStatic(FDBKey(vlan: 10, mac: 0x0200_0000_0099), port: t))

        XCTAssertEqual(try call(server, #"{"cmd":"fdb-flush","port":"t","vlan":10}"#, as: FDBFlushReply.self).removed, 1)
        XCTAssertEqual(try call(server, #"{"cmd":"fdb-flush","port":"g"}"#, as: FDBFlushReply.self).removed, 2)
        XCTAssertEqual(try call(server, #"{"cmd":"fdb-flush","vlan":10}"#, as: FDBFlushReply.self).removed, 0,
                       "the static entry stays")
        XCTAssertEqual(try refusal(server, #"{"cmd":"fdb-flush","port":"nope"}"#), "no port is named 'nope'")
        XCTAssertEqual(try call(server, #"{"cmd":"fdb-flush"}"#, as: FDBFlushReply.self).removed, 3)
        XCTAssertEqual(db.counters.entries, 1)
        XCTAssertEqual(try call(server, #"{"cmd":"fdb-flush","static":true}"#, as: FDBFlushReply.self).removed, 1)
        XCTAssertEqual(db.counters.entries, 0)
    }

    func testClearedStatsCountFromTheMarkWhileTheCountersRunOn() throws {
        let (server, sw) = try makeServer()
        port(sw, "g").received(packets: 100, bytes: 6400)
        port(sw, "s").sent(packets: 100, bytes: 6400)
        port(sw, "s").dropped(.noRxBuffer, 3)
        let before = try call(server, #"{"cmd":"stats"}"#, as: StatsReply.self)
        XCTAssertEqual(before.cleared, false)
        XCTAssertEqual(before.ports.map(\.traffic.rxPackets), [100, 0, 0])

        XCTAssertEqual(try call(server, #"{"cmd":"stats-clear"}"#, as: OKReply.self), OKReply())
        let cleared = try call(server, #"{"cmd":"show","what":"stats"}"#, as: StatsReply.self)
        XCTAssertEqual(cleared.cleared, true)
        XCTAssertLessThan(cleared.elapsed ?? 99, 5)
        for p in cleared.ports {
            XCTAssertEqual([p.traffic.rxPackets, p.traffic.rxBytes, p.traffic.txPackets, p.traffic.txBytes], [0, 0, 0, 0])
            XCTAssertEqual(p.traffic.drops, [:], p.name)
            XCTAssertEqual(p.queues.map(\.traffic.rxPackets), [0], p.name)
        }

        port(sw, "g").received(packets: 5, bytes: 320)
        port(sw, "s").sent(packets: 5, bytes: 320)
        port(sw, "s").dropped(.noRxBuffer, 1)
        let after = try call(server, #"{"cmd":"stats"}"#, as: StatsReply.self)
        XCTAssertEqual(after.ports.map(\.traffic.rxPackets), [5, 0, 0])
        XCTAssertEqual(after.ports[1].traffic.txBytes, 320)
        XCTAssertEqual(after.ports[1].traffic.drops, ["no_rx_buffer": 1])
        XCTAssertEqual(after.ports[1].queues[0].traffic.drops, ["no_rx_buffer": 1])
        // The counters themselves (what /metrics serves) never went back.
        XCTAssertEqual(port(sw, "g").snapshot.rxPackets, 105)
        XCTAssertEqual(port(sw, "s").snapshot.drops[.noRxBuffer], 4)
    }

    func testRatesComeFromTwoSamplesOfTheAbsoluteCounters() throws {
        let (server, sw) = try makeServer()
        server.rates.sampleIfDue(sw.ports, now: 100)
        XCTAssertNil(try call(server, #"{"cmd":"stats"}"#, as: StatsReply.self).ports[0].rates, "one sample is no rate")
        port(sw, "g").received(packets: 1000, bytes: 64000)
        port(sw, "s").sent(packets: 2000, bytes: 128000)
        port(sw, "s").dropped(.txFull, 50)
        server.rates.sampleIfDue(sw.ports, now: 100.5)  // not due: the rates stay unknown
        XCTAssertNil(try call(server, #"{"cmd":"stats"}"#, as: StatsReply.self).ports[0].rates)
        XCTAssertEqual(server.rates.timeout(now: 100.5), 0.5, accuracy: 1e-9)
        // A clear between the samples changes the reported counts, not the rates.
        _ = try call(server, #"{"cmd":"stats-clear"}"#, as: OKReply.self)
        server.rates.sampleIfDue(sw.ports, now: 102)
        let reply = try call(server, #"{"cmd":"stats"}"#, as: StatsReply.self)
        XCTAssertEqual(reply.ports[0].rates,
                       PortRates(rxPPS: 500, rxBPS: 256_000, txPPS: 0, txBPS: 0, dropsPPS: 0, interval: 2))
        XCTAssertEqual(reply.ports[1].rates,
                       PortRates(rxPPS: 0, rxBPS: 0, txPPS: 1000, txBPS: 512_000, dropsPPS: 25, interval: 2))
        XCTAssertEqual(reply.ports[0].traffic.rxPackets, 0)
    }

    func testAPortAddedAgainCountsAndRatesFromZero() throws {
        let (server, sw) = try makeServer()
        server.rates.sampleIfDue(sw.ports, now: 1)
        port(sw, "s").sent(packets: 10, bytes: 640)
        server.rates.sampleIfDue(sw.ports, now: 2)
        _ = try call(server, #"{"cmd":"stats-clear"}"#, as: OKReply.self)
        try sw.removePort(named: "s")
        _ = try sw.addPort(PortSpec(parsing: "sink:name=s"))
        port(sw, "s").sent(packets: 3, bytes: 192)
        let reply = try call(server, #"{"cmd":"stats"}"#, as: StatsReply.self)
        let s = try XCTUnwrap(reply.ports.first { $0.name == "s" })
        XCTAssertEqual(s.traffic.txPackets, 3, "the old port's mark is not taken off the new one's counts")
        XCTAssertNil(s.rates, "the new port has not been sampled yet")
    }

    func testRateTextIsShortAndExact() {
        XCTAssertEqual(RateText.format(0), "0")
        XCTAssertEqual(RateText.format(12.5), "12.5")
        XCTAssertEqual(RateText.format(999), "999")
        XCTAssertEqual(RateText.format(1000), "1.00k")
        XCTAssertEqual(RateText.format(1234), "1.23k")
        XCTAssertEqual(RateText.format(45_600_000), "45.6M")
        XCTAssertEqual(RateText.format(123_400_000_000), "123G")
        XCTAssertEqual(RateText.format(999_700), "1.00M")
        XCTAssertEqual(RateText.format(-1), "-")
    }

    func testTopSortsByBitRateAndStatsShowQueues() {
        func port(_ name: String, bps: Double?) -> PortStatistics {
            let traffic = TrafficCounters(rxPackets: 1, rxBytes: 64, txPackets: 2, txBytes: 128, drops: ["tx_full": 4])
            return PortStatistics(name: name, kind: "sink", spec: "sink", state: "running", traffic: traffic,
                                  queues: [QueueStatistics(queue: 0, traffic: traffic)],
                                  rates: bps.map { PortRates(rxPPS: $0 / 512, rxBPS: $0, txPPS: 0, txBPS: 0, dropsPPS: 1,
                                                              interval: 1) })
        }
        let reply = StatsReply(ports: [port("a", bps: 512), port("new", bps: nil), port("b", bps: 5_120_000)],
                               workers: [],
                               switch: SwitchStatistics(unicast: 0, flooded: 0, hairpin: 0,
                                                        fdb: FDBCountersInfo(entries: 0, learned: 0, moves: 0,
                                                                             overflows: 0, aged: 0, capacity: 1,
                                                                             agingTime: 1)))
        let lines = Ctl.Top.view(reply, interactive: false)
        XCTAssertEqual(lines[0], "ports 3  rx 10.0k pps 5.12M bps  tx 0 pps 0 bps  drops 2/s")
        XCTAssertEqual(lines[2].split(separator: " ", omittingEmptySubsequences: true),
                       ["port", "kind", "rx_pps", "rx_bps", "tx_pps", "tx_bps", "drops_pps", "drops"])
        XCTAssertEqual(lines.dropFirst(3).map { $0.split(separator: " ").first.map(String.init) }, ["b", "a", "new"])
        XCTAssertEqual(lines[5].split(separator: " ", omittingEmptySubsequences: true),
                       ["new", "sink", "-", "-", "-", "-", "-", "4"])
        XCTAssertTrue(Ctl.Top.view(reply, interactive: true)[0].hasSuffix("(q quits)"))

        let queues = Ctl.Stats.queueTable(reply).lines
        XCTAssertEqual(queues[0].split(separator: " ", omittingEmptySubsequences: true),
                       ["port", "queue", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "drops", "offloads"])
        XCTAssertEqual(queues[1].split(separator: " ", omittingEmptySubsequences: true),
                       ["a", "0", "1", "64", "2", "128", "tx_full=4", "-"])
        let ports = Ctl.Stats.portTable(reply).lines
        XCTAssertEqual(ports[2].split(separator: " ", omittingEmptySubsequences: true),
                       ["new", "sink", "running", "1", "64", "2", "128", "-", "-", "-", "-", "-", "tx_full=4"])
    }
}
