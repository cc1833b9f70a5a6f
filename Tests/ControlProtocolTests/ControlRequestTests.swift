import ControlProtocol
import Foundation
import XCTest

final class ControlRequestTests: XCTestCase {
    private func decode(_ line: String) -> ControlCodec.Incoming { ControlCodec.decodeRequest(Array(line.utf8)) }

    private func refusal(_ line: String) -> String? {
        guard case .failure(let error) = decode(line).request else { return nil }
        return error.description
    }

    func testEveryRequestSurvivesTheWire() throws {
        let requests: [ControlRequest] = [
            .hello(version: 1), .stats, .statsClear, .show(.ports), .show(.fdb), .show(.stats),
            .fdbFlush(FDBFlushFilter()), .fdbFlush(FDBFlushFilter(port: "vm0")),
            .fdbFlush(FDBFlushFilter(port: "vm0", vlan: 10, includingStatic: true)),
            .fdbFlush(FDBFlushFilter(vlan: 4094, includingStatic: false)),
            .fdbAdd(mac: "52:54:00:12:34:56", port: "vm0", vlan: nil),
            .fdbAdd(mac: "52:54:00:12:34:56", port: "trunk0", vlan: 10),
            .fdbDel(mac: "52:54:00:12:34:56", vlan: 4094), .fdbDel(mac: "02:00:00:00:00:01", vlan: nil),
            .portAdd(spec: "vhost:/run/ferry/vm1.sock,name=vm1"), .portDel(name: "vm1"),
            .capture(CaptureParameters(port: "vm0")),
            .capture(CaptureParameters(port: "vm0", direction: .rx, count: 10, snapLength: 128)),
        ]
        for (n, request) in requests.enumerated() {
            for id in [nil, RequestID.number(n), .text("req-\(n)")] {
                let incoming = ControlCodec.decodeRequest(try ControlCodec.encodeRequest(request, id: id).dropLast())
                XCTAssertEqual(incoming.id, id)
                XCTAssertEqual(try incoming.request.get(), request)
            }
        }
    }

    /// Requests as clients written before the types sent them: no id, optional fields left out.
    func testRequestsWithoutIdAndDefaults() throws {
        XCTAssertEqual(try decode(#"{"cmd":"stats"}"#).request.get(), .stats)
        XCTAssertNil(decode(#"{"cmd":"stats"}"#).id)
        XCTAssertEqual(try decode(#"{"cmd":"capture","port":"a"}"#).request.get(),
                       .capture(CaptureParameters(port: "a", direction: .both, count: nil, snapLength: 65535)))
        XCTAssertEqual(try decode(#"{"cmd":"fdb-del","mac":"02:00:00:00:00:99"}"#).request.get(),
                       .fdbDel(mac: "02:00:00:00:00:99", vlan: nil))
        // Fields a command does not use are ignored; a whole number may be written 10.0.
        XCTAssertEqual(try decode(#"{"cmd":"fdb-add","mac":"m","port":"p","vlan":10.0,"pad":"x"}"#).request.get(),
                       .fdbAdd(mac: "m", port: "p", vlan: 10))
    }

    func testFlushDefaultsToEveryLearnedEntry() throws {
        XCTAssertEqual(try decode(#"{"cmd":"fdb-flush"}"#).request.get(), .fdbFlush(FDBFlushFilter()))
        XCTAssertEqual(try decode(#"{"cmd":"fdb-flush","static":false,"vlan":10}"#).request.get(),
                       .fdbFlush(FDBFlushFilter(vlan: 10)))
        XCTAssertEqual(try decode(#"{"cmd":"stats-clear"}"#).request.get(), .statsClear)
        let flushed = String(decoding: ControlCodec.encodeReply(FDBFlushReply(removed: 2), id: .number(4)), as: UTF8.self)
        XCTAssertEqual(flushed, #"{"id":4,"ok":true,"removed":2}"# + "\n")
    }

    /// A reply from a Ferry before rates and the clear mark still decodes; their fields are nil.
    func testStatsWithoutRatesOrMarkDecode() throws {
        let line = #"{"ports":[{"name":"g","kind":"gen","spec":"gen:x","state":"running","rx_packets":1,"rx_bytes":64,"#
            + #""tx_packets":0,"tx_bytes":0,"drops":{},"queues":[]}],"workers":[],"switch":{"unicast":0,"flooded":0,"#
            + #""hairpin":0,"fdb":{"entries":0,"learned":0,"moves":0,"overflows":0,"aged":0,"capacity":1,"aging_time":1}}}"#
        let reply = try ControlCodec.decodeReply(Array(line.utf8), as: StatsReply.self).body.get()
        XCTAssertNil(reply.ports[0].rates)
        XCTAssertNil(reply.elapsed)
        XCTAssertNil(reply.cleared)
    }

    func testIdIsEchoedWithRefusalsToo() {
        XCTAssertEqual(decode(#"{"cmd":"flush","id":7}"#).id, .number(7))
        XCTAssertEqual(decode(#"{"id":"x"}"#).id, .text("x"))
        XCTAssertEqual(refusal(#"{"id":"x"}"#), #"request has no "cmd""#)
        XCTAssertNil(decode(#"{"cmd":"stats","id":null}"#).id)
        for bad in [#"{"cmd":"stats","id":true}"#, #"{"cmd":"stats","id":1.5}"#, #"{"cmd":"stats","id":[1]}"#,
                    #"{"cmd":"stats","id":{}}"#] {
            XCTAssertNil(decode(bad).id, bad)
            XCTAssertEqual(refusal(bad), #""id" must be a string or a whole number"#, bad)
        }
    }

    func testHelloNamesAVersion() throws {
        XCTAssertEqual(try decode(#"{"cmd":"hello","version":1}"#).request.get(), .hello(version: 1))
        XCTAssertEqual(try decode(#"{"cmd":"hello","version":7}"#).request.get(), .hello(version: 7))
        XCTAssertEqual(refusal(#"{"cmd":"hello"}"#), #"request has no "version""#)
        XCTAssertEqual(refusal(#"{"cmd":"hello","version":"1"}"#), #""version" must be a whole number"#)
        XCTAssertEqual(refusal(#"{"cmd":"hello","version":0}"#),
                       "protocol version 0 is older than the oldest this Ferry speaks (1)")
    }

    /// The refusals docs/CONTROL.md lists for malformed requests, with their exact text.
    func testMalformedRequestsGetTheDocumentedErrors() {
        let commands = "hello, stats, stats-clear, show, fdb-add, fdb-del, fdb-flush, port, capture"
        let cases: [(String, String)] = [
            ("[1]", "request is not a JSON object"),
            (#""stats""#, "request is not a JSON object"),
            ("null", "request is not a JSON object"),
            (#"{"cmd":"sta"#, "request is not a JSON object"),
            ("\u{FF}", "request is not a JSON object"),
            (#"{"cmd":"flush"}"#, "unknown command 'flush' (one of: \(commands))"),
            (#"{"command":"stats"}"#, #"request has no "cmd""#),
            (#"{"cmd":5}"#, #""cmd" must be a string"#),
            (#"{"cmd":null}"#, #""cmd" must be a string"#),
            (#"{"cmd":"show"}"#, #"request has no "what" (one of: ports, fdb, stats, vteps)"#),
            (#"{"cmd":"show","what":"routes"}"#, "cannot show 'routes' (one of: ports, fdb, stats, vteps)"),
            (#"{"cmd":"fdb-add","port":"s"}"#, #"request has no "mac""#),
            (#"{"cmd":"fdb-add","mac":"m"}"#, #"request has no "port""#),
            (#"{"cmd":"fdb-add","mac":5,"port":"s"}"#, #""mac" must be a string"#),
            (#"{"cmd":"fdb-add","mac":"m","port":"s","vlan":true}"#, #""vlan" must be a whole number 1...4094"#),
            (#"{"cmd":"fdb-add","mac":"m","port":"s","vlan":"1"}"#, #""vlan" must be a whole number 1...4094"#),
            (#"{"cmd":"fdb-add","mac":"m","port":"s","vlan":1.5}"#, #""vlan" must be a whole number 1...4094"#),
            (#"{"cmd":"fdb-add","mac":"m","port":"s","vlan":0}"#, "vlan 0 is not 1...4094"),
            (#"{"cmd":"fdb-del","mac":"m","vlan":4095}"#, "vlan 4095 is not 1...4094"),
            (#"{"cmd":"port"}"#, #"request has no "op" (one of: add, del)"#),
            (#"{"cmd":"port","op":"move"}"#, "unknown port operation 'move' (one of: add, del)"),
            (#"{"cmd":"port","op":"add"}"#, #"request has no "spec""#),
            (#"{"cmd":"port","op":"del"}"#, #"request has no "name""#),
            (#"{"cmd":"capture"}"#, #"request has no "port""#),
            (#"{"cmd":"capture","port":"a","direction":"in"}"#, "direction 'in' is not rx, tx or both"),
            (#"{"cmd":"capture","port":"a","count":0}"#, #""count" must be a whole number 1...2147483647"#),
            (#"{"cmd":"capture","port":"a","count":false}"#, #""count" must be a whole number 1...2147483647"#),
            (#"{"cmd":"capture","port":"a","snaplen":65536}"#, #""snaplen" must be a whole number 1...65535"#),
            (#"{"cmd":"fdb-flush","port":7}"#, #""port" must be a string"#),
            (#"{"cmd":"fdb-flush","vlan":"10"}"#, #""vlan" must be a whole number 1...4094"#),
            (#"{"cmd":"fdb-flush","vlan":5000}"#, "vlan 5000 is not 1...4094"),
            (#"{"cmd":"fdb-flush","static":1}"#, #""static" must be true or false"#),
            (#"{"cmd":"fdb-flush","static":"true"}"#, #""static" must be true or false"#),
            // Checked in the documented order: the port's type before the vlan's.
            (#"{"cmd":"fdb-flush","port":1,"vlan":0,"static":0}"#, #""port" must be a string"#),
            (#"{"cmd":"fdb-flush","vlan":0,"static":0}"#, "vlan 0 is not 1...4094"),
        ]
        for (line, error) in cases {
            XCTAssertEqual(refusal(line), error, line)
        }
    }

    func testRepliesCarryTheRequestIdBesideTheirFields() throws {
        let ok = String(decoding: ControlCodec.encodeReply(OKReply(), id: .number(3)), as: UTF8.self)
        XCTAssertEqual(ok, #"{"id":3,"ok":true}"# + "\n")
        let plain = String(decoding: ControlCodec.encodeReply(OKReply(), id: nil), as: UTF8.self)
        XCTAssertEqual(plain, #"{"ok":true}"# + "\n")
        let refused = ControlCodec.encodeError(.noEntry(mac: "02:00:00:00:00:98", vlan: 20), id: .text("a"))
        XCTAssertEqual(String(decoding: refused, as: UTF8.self),
                       #"{"error":"no entry for 02:00:00:00:00:98 in vlan 20","id":"a"}"# + "\n")

        let reply = try ControlCodec.decodeReply(refused.dropLast(), as: OKReply.self)
        XCTAssertEqual(reply.id, .text("a"))
        XCTAssertEqual(reply.body, .failure(ErrorReply(error: "no entry for 02:00:00:00:00:98 in vlan 20")))
    }
}
