import ControlProtocol
import Foundation
import Glibc
import Platform

/// A connection to a running Ferry that has agreed a protocol version (`hello`). Each
/// request carries an id; a reply must carry it back, or the connection is out of step.
final class ControlConnection {
    let path: String
    let socket: FileDescriptor
    private var nextID = 1
    /// Bytes read past the end of the last reply line.
    private var unread: [UInt8] = []

    init(_ path: String) throws {
        self.path = path
        do { socket = try UnixSocket.connect(path: path) } catch {
            // Its own status (docs/OPERATIONS.md): not running is not the same as refusing.
            FileHandle.standardError.write(Data("Error: cannot reach Ferry at \(path): \(error)\n".utf8))
            throw ExitStatus.unavailable
        }
        let hello = try call(.hello(version: ControlProtocol.version), as: HelloReply.self)
        guard hello.version == ControlProtocol.version else {
            throw CtlError("Ferry \(hello.ferry) at \(path) speaks control protocol \(hello.version), "
                           + "this ferry \(ControlProtocol.version)")
        }
    }

    /// Sends one request and returns its reply; an `{"error":...}` reply is thrown.
    func call<Reply: Decodable & Sendable>(_ request: ControlRequest, as type: Reply.Type) throws -> Reply {
        let id = try send(request)
        return try reply(to: id, as: type)
    }

    /// Sends one request; the caller reads what comes back.
    @discardableResult
    func send(_ request: ControlRequest) throws -> RequestID {
        let id = RequestID.number(nextID)
        nextID += 1
        try UnixSocket.send(socket.rawValue, bytes: try ControlCodec.encodeRequest(request, id: id))
        return id
    }

    /// The reply line to request `id`; an `{"error":...}` reply is thrown.
    /// `startingWith`: the reply's first bytes, already read by a caller that had to look.
    func reply<Reply: Decodable & Sendable>(to id: RequestID, as type: Reply.Type,
                                            startingWith first: ArraySlice<UInt8> = []) throws -> Reply {
        let line = try readLine(startingWith: first)
        let reply: ControlCodec.Reply<Reply>
        do { reply = try ControlCodec.decodeReply(line, as: type) } catch {
            throw CtlError("unexpected reply: \(String(decoding: line, as: UTF8.self))")
        }
        // A refusal of the line as a whole (too long, not JSON) cannot name the request.
        if case .failure(let refusal) = reply.body, reply.id == nil { throw CtlError(refusal.error) }
        guard reply.id == id else {
            throw CtlError("the reply to request \(id) came for \(reply.id.map(\.description) ?? "no request")")
        }
        switch reply.body {
        case .success(let body): return body
        case .failure(let refusal): throw CtlError(refusal.error)
        }
    }

    /// One line, without its newline; what came after it waits for the next call.
    private func readLine(startingWith first: ArraySlice<UInt8>) throws -> [UInt8] {
        unread += first
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !unread.contains(UInt8(ascii: "\n")) {
            let n = DescriptorIO.read(socket.rawValue, into: &buffer)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                if unread.isEmpty { throw CtlError("Ferry at \(path) closed the connection without a reply") }
                break
            }
            unread += buffer[0..<n]
        }
        let end = unread.firstIndex(of: UInt8(ascii: "\n")) ?? unread.endIndex
        let line = Array(unread[..<end])
        unread.removeSubrange(..<min(end + 1, unread.endIndex))
        return line
    }
}

extension Encodable {
    /// The reply as `--json` prints it: keys sorted, as Ferry sent it, without the request id.
    func printJSON() throws {
        print(String(decoding: try ControlCodec.encoder().encode(self), as: UTF8.self))
    }
}
