import Foundation

/// Turns requests and replies into lines and back. Every line is one JSON object and a
/// newline; `"id"`, when a request has one, sits beside the message's own fields and
/// comes back the same in its reply (a request without one gets a reply without one).
public enum ControlCodec {
    /// A request line as the server reads it: its id (when one could be read) and the
    /// request, or why it is refused.
    public struct Incoming: Sendable {
        public let id: RequestID?
        public let request: Result<ControlRequest, ControlError>
    }

    /// A reply line as a client reads it: its id and the reply, or Ferry's refusal.
    public struct Reply<Body: Decodable & Sendable>: Sendable {
        public let id: RequestID?
        public let body: Result<Body, ErrorReply>
    }

    public static func decodeRequest(_ line: some Collection<UInt8>) -> Incoming {
        do {
            return try JSONDecoder().decode(IncomingEnvelope.self, from: Data(line)).incoming
        } catch {
            // Not JSON, not UTF-8, or JSON but not an object: the decoder tells them apart,
            // the reply need not.
            return Incoming(id: nil, request: .failure(.notAnObject))
        }
    }

    public static func encodeRequest(_ request: ControlRequest, id: RequestID?) throws -> [UInt8] {
        try line(Envelope(id: id, body: request))
    }

    public static func encodeReply(_ body: some Encodable, id: RequestID?) -> [UInt8] {
        do { return try line(Envelope(id: id, body: body)) } catch {
            return encodeError(.refused("reply could not be encoded"), id: id)
        }
    }

    public static func encodeError(_ error: ControlError, id: RequestID?) -> [UInt8] {
        // A String field and an optional id: encoding cannot fail.
        (try? line(Envelope(id: id, body: ErrorReply(error: error.description)))) ?? Array("{}\n".utf8)
    }

    /// Reads a reply; an `{"error":...}` one becomes the body's failure whatever `Body` is.
    public static func decodeReply<Body: Decodable & Sendable>(_ line: some Collection<UInt8>,
                                                               as: Body.Type) throws -> Reply<Body> {
        let envelope = try JSONDecoder().decode(ReplyEnvelope<Body>.self, from: Data(line))
        return Reply(id: envelope.id, body: envelope.body)
    }

    /// The encoding every reply and request uses: keys sorted, so a reply's text is the same
    /// each time, and `/` unescaped, so socket paths read as they are.
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    private static func line(_ value: some Encodable) throws -> [UInt8] {
        var bytes = [UInt8](try encoder().encode(value))
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }
}

/// The wire form of a refusal.
public struct ErrorReply: Codable, Equatable, Sendable, Error, CustomStringConvertible {
    public let error: String

    public init(error: String) { self.error = error }

    public var description: String { error }
}

/// A message's own fields with `"id"` beside them.
private struct Envelope<Body: Encodable>: Encodable {
    let id: RequestID?
    let body: Body

    func encode(to encoder: any Encoder) throws {
        try body.encode(to: encoder)
        var c = encoder.container(keyedBy: FieldKey.self)
        try c.encodeIfPresent(id, forKey: "id")
    }
}

private struct IncomingEnvelope: Decodable {
    let incoming: ControlCodec.Incoming

    init(from decoder: any Decoder) throws {
        let fields = try decoder.container(keyedBy: FieldKey.self)
        // A bad id is refused before anything else: a reply that cannot carry the
        // client's id back must not look like the answer to some other request.
        guard !fields.contains("id") || (try? fields.decodeNil(forKey: "id")) == true
                || (try? fields.decode(RequestID.self, forKey: "id")) != nil else {
            incoming = .init(id: nil, request: .failure(.badID))
            return
        }
        let id = try? fields.decodeIfPresent(RequestID.self, forKey: "id")
        do throws(ControlError) {
            incoming = .init(id: id, request: .success(try ControlRequest(fields: RequestFields(container: fields))))
        } catch {
            incoming = .init(id: id, request: .failure(error))
        }
    }
}

private struct ReplyEnvelope<Body: Decodable & Sendable>: Decodable {
    let id: RequestID?
    let body: Result<Body, ErrorReply>

    init(from decoder: any Decoder) throws {
        let fields = try decoder.container(keyedBy: FieldKey.self)
        id = try fields.decodeIfPresent(RequestID.self, forKey: "id")
        if fields.contains("error") {
            body = .failure(try ErrorReply(from: decoder))
        } else {
            body = .success(try Body(from: decoder))
        }
    }
}
