import ControlProtocol
import Foundation
import Model
import Packets
import Ports

/// What the control socket parses from a client's bytes before anything acts on them: each
/// line through `ControlCodec.decodeRequest` (as the server reads it: every command, `fdb-flush`
/// and `stats-clear` included), and the values in a
/// request that have a syntax of their own — a port spec (`port add`) and a MAC address
/// (`fdb add`, `fdb del`).
///
/// Input: a mode byte (0: request lines, 1: one port spec, 2: one MAC address), then UTF-8 text.
///
/// Checked: a request that decodes encodes (as `ferry ctl` sends it) to a line that decodes to the
/// same request and id; a MAC address is accepted only in its one spelling (six pairs of hex
/// digits, ':' or '-'), which prints back the same; a port spec parses the same way twice.
public enum ControlRequestFuzz {
    public static let target = FuzzTarget(name: "control-request", run: { run($0) }, seeds: { seeds() })

    public static func run(_ bytes: UnsafeRawBufferPointer) -> FuzzOutcome {
        var input = FuzzInput(bytes)
        let mode = input.byte() % 3
        let text = input.take(input.remaining)
        var outcome = FuzzOutcome()
        switch mode {
        case 0:
            for line in text.split(separator: 10, omittingEmptySubsequences: false) {
                let incoming = ControlCodec.decodeRequest(line)
                guard case .success(let request) = incoming.request else {
                    outcome.refused += 1
                    continue
                }
                outcome.accepted += 1
                checkRoundTrip(request, id: incoming.id)
                switch request {
                case .portAdd(let spec): checkPortSpec(spec, &outcome)
                case .fdbAdd(let mac, _, _), .fdbDel(let mac, _): checkMAC(mac, &outcome)
                default: break
                }
            }
        case 1: checkPortSpec(String(decoding: text, as: UTF8.self), &outcome)
        default: checkMAC(String(decoding: text, as: UTF8.self), &outcome)
        }
        return outcome
    }

    static func checkRoundTrip(_ request: ControlRequest, id: RequestID?) {
        let line: [UInt8]
        do { line = try ControlCodec.encodeRequest(request, id: id) } catch {
            fuzzCheck(false, "\(request) decoded but does not encode: \(error)")
            return
        }
        let again = ControlCodec.decodeRequest(line.dropLast())
        fuzzCheck(again.id == id && again.request == .success(request),
                  "\(request) id \(String(describing: id)) comes back as \(again.request) id \(String(describing: again.id))")
    }

    static func checkPortSpec(_ text: String, _ outcome: inout FuzzOutcome) {
        do throws(PortSpec.ParseError) {
            let spec = try PortSpec(parsing: text)
            let again = try PortSpec(parsing: text)
            fuzzCheck(spec == again, "'\(text)' parses two ways")
            outcome.accepted += 1
        } catch {
            outcome.refused += 1
        }
    }

    static func checkMAC(_ text: String, _ outcome: inout FuzzOutcome) {
        guard let mac = MACAddress(text) else {
            outcome.refused += 1
            return
        }
        let canonical = text.lowercased().replacingOccurrences(of: "-", with: ":")
        fuzzCheck(mac.description == canonical, "'\(text)' accepted as the MAC address \(mac)")
        outcome.accepted += 1
    }

    // MARK: - Seeds

    static func seeds() -> [(name: String, bytes: [UInt8])] {
        let requests = """
            {"cmd":"hello","version":1,"id":"first"}
            {"cmd":"stats"}
            {"cmd":"show","what":"ports"}
            {"cmd":"fdb-add","mac":"52:54:00:12:34:56","port":"a","vlan":10,"id":7}
            {"cmd":"fdb-del","mac":"52-54-00-12-34-56"}
            {"cmd":"port","op":"add","spec":"vhost:/tmp/x.sock,client,queues=2,name=x,trunk=10,20-30"}
            {"cmd":"port","op":"del","name":"x"}
            {"cmd":"capture","port":"a","direction":"rx","count":10,"snaplen":128}
            {"cmd":"stats-clear"}
            {"cmd":"fdb-flush","port":"a","vlan":10,"static":true}
            {"cmd":"fdb-flush","static":false}
            """
        return [("requests", [0] + Array(requests.utf8)),
                ("spec-vhost", [1] + Array("vhost:/run/ferry/vm0.sock,queues=2,owner=root,mode=0660,vlan=10".utf8)),
                ("spec-gen", [1] + Array("gen:dst=52:54:00:00:00:01,src=52:54:00:00:00:02,size=60,count=5,name=g".utf8)),
                ("spec-xdp", [1] + Array("xdp:eth0,queues=2,mode=native,zerocopy=auto,trunk=1-4094".utf8)),
                ("mac", [2] + Array("52:54:00:AB:cd:0f".utf8))]
    }
}
