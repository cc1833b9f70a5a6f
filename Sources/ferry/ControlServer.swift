import Engine
import Foundation
import Glibc
import Logging
import Platform
import Telemetry

/// The control socket: one JSON object per line each way. The commands
/// (`stats`, `show`, `fdb-add`, `fdb-del`) are in ControlServer+Commands.swift,
/// `capture` (which turns the connection into a pcap stream) in
/// ControlServer+Capture.swift, all in docs/CONTROL.md; a malformed, oversized or refused request gets an
/// `{"error":...}` reply and the connection stays usable. Several clients may
/// be connected at once. Served on the control thread, like the forwarding
/// database's writer.
final class ControlServer: ControlLoopClient {
    let path: String
    let sw: Switch
    let logger: Logger
    let captures: CaptureService
    private var listener: Int32
    private var clients: [Int32: [UInt8]] = [:]
    static let maxLine = 65536

    init(path: String, switch sw: Switch, captures: CaptureService, logger: Logger) throws {
        self.path = path
        self.sw = sw
        self.logger = logger
        self.captures = captures
        let fd = try UnixSocket.listen(path: path)
        try fd.setNonBlocking()
        listener = fd.release()
    }

    func close() {
        for fd in clients.keys { Glibc.close(fd) }
        clients = [:]
        if listener >= 0 { Glibc.close(listener); unlink(path) }
        listener = -1
    }

    var pollDescriptors: [Int32] { [listener] + Array(clients.keys) }
    func timeout(now: Double) -> Double? { nil }

    func service(now: Double) {
        while let fd = try? UnixSocket.accept(listener) {
            try? fd.setNonBlocking()
            clients[fd.release()] = []
        }
        var buffer = [UInt8](repeating: 0, count: 4096)
        for fd in Array(clients.keys) {
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) {
                    Glibc.close(fd)
                    clients[fd] = nil
                    break
                }
                if n < 0 { break }
                clients[fd, default: []].append(contentsOf: buffer[0..<n])
                drainLines(fd)
                if clients[fd] == nil { break }
            }
        }
    }

    private func drainLines(_ fd: Int32) {
        while var pending = clients[fd] {
            guard let nl = pending.firstIndex(of: 10) else {
                if pending.count > Self.maxLine {
                    reply(fd, ["error": "request longer than \(Self.maxLine) bytes"])
                    clients[fd] = []
                }
                return
            }
            let line = Array(pending[..<nl])
            pending.removeSubrange(...nl)
            clients[fd] = pending
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line)), let request = obj as? [String: Any] else {
                reply(fd, ["error": "request is not a JSON object"])
                continue
            }
            if request["cmd"] as? String == "capture" {
                // A capture that starts takes the connection over (ControlServer+Capture.swift).
                if let refusal = startCapture(fd, request) { reply(fd, refusal) } else { clients[fd] = nil; return }
                continue
            }
            reply(fd, answer(request))
        }
    }

    private func reply(_ fd: Int32, _ object: [String: Any]) {
        guard var data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
        data.append(10)
        let bytes = [UInt8](data)
        do { try UnixSocket.send(fd, bytes: bytes) } catch {
            Glibc.close(fd)
            clients[fd] = nil
        }
    }
}
