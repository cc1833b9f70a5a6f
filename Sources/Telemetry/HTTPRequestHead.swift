/// What the metrics endpoint makes of the bytes a client sent so far: the
/// request line of an HTTP/1.x request (RFC 9112 §3) once its head is
/// complete. Headers are not needed to answer a scrape and are skipped; a body
/// is never expected (GET).
public enum HTTPRequestHead: Equatable {
    /// The blank line ending the head has not arrived yet.
    case incomplete
    /// `method` and `path` (the target without its query) of a complete head.
    case request(method: String, path: String)
    /// Not an HTTP/1.x request, or a head longer than `maxHeadLength`: answered 400.
    case bad(String)

    /// A scrape's head is a few hundred bytes; more is not a scraper.
    public static let maxHeadLength = 8192

    public static func parse(_ bytes: [UInt8]) -> HTTPRequestHead {
        guard let end = headEnd(bytes) else {
            return bytes.count > maxHeadLength ? .bad("request head longer than \(maxHeadLength) bytes") : .incomplete
        }
        if end > maxHeadLength { return .bad("request head longer than \(maxHeadLength) bytes") }
        // RFC 9112 §2.2: a server should ignore at least one empty line before the request line.
        var start = 0
        while start + 1 < end && bytes[start] == 13 && bytes[start + 1] == 10 { start += 2 }
        let lineEnd = bytes[start..<end].firstIndex(of: 13) ?? end
        guard lineEnd > start else { return .bad("empty request line") }
        guard let line = String(validatingUTF8Bytes: bytes[start..<lineEnd]) else {
            return .bad("request line is not text")
        }
        let parts = line.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else {
            return .bad("request line is not METHOD TARGET VERSION")
        }
        guard parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0" else { return .bad("not HTTP/1.x: \(parts[2])") }
        guard parts[0].allSatisfy({ $0.isASCII && ($0.isUppercase || $0 == "-") }) else {
            return .bad("malformed method")
        }
        let target = parts[1]
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
        return .request(method: String(parts[0]), path: String(path))
    }

    /// Bytes up to and including the CRLF CRLF that ends the head, if it came.
    static func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        var i = 0
        while i + 3 < bytes.count {
            if bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 { return i + 4 }
            i += 1
        }
        return nil
    }
}

extension String {
    init?(validatingUTF8Bytes bytes: ArraySlice<UInt8>) {
        guard let text = String(validating: bytes, as: UTF8.self) else { return nil }
        self = text
    }
}

/// A complete HTTP/1.1 response; the connection closes after it (no
/// keep-alive: a scrape every few seconds does not need it).
public struct HTTPResponse: Equatable {
    public let status: Int
    public let reason: String
    public let contentType: String
    public let body: [UInt8]
    public var extraHeaders: [(String, String)] = []

    public static func == (a: Self, b: Self) -> Bool {
        a.status == b.status && a.contentType == b.contentType && a.body == b.body
    }

    /// Prometheus' text exposition format, version 0.0.4.
    public static let metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

    public init(status: Int, reason: String, contentType: String = "text/plain; charset=utf-8", body: [UInt8]) {
        self.status = status
        self.reason = reason
        self.contentType = contentType
        self.body = body
    }

    public static func text(_ status: Int, _ reason: String, _ message: String) -> HTTPResponse {
        HTTPResponse(status: status, reason: reason, body: Array((message + "\n").utf8))
    }

    /// The bytes on the wire; a HEAD response carries the headers only (RFC 9110 §9.3.2).
    public func bytes(includingBody: Bool = true) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n"
        for (name, value) in extraHeaders { head += "\(name): \(value)\r\n" }
        head += "Connection: close\r\n\r\n"
        return Array(head.utf8) + (includingBody ? body : [])
    }
}

/// The endpoint's routes: `GET /metrics` (or HEAD) is the exposition, any other
/// path 404, any other method on /metrics 405, a malformed request 400.
public enum MetricsRoute {
    public static func respond(to head: HTTPRequestHead, metrics: () -> [UInt8]) -> HTTPResponse? {
        switch head {
        case .incomplete:
            return nil
        case .bad(let why):
            return .text(400, "Bad Request", why)
        case .request(let method, let path):
            guard path == "/metrics" else { return .text(404, "Not Found", "not found: \(path) (try /metrics)") }
            guard method == "GET" || method == "HEAD" else {
                var response = HTTPResponse.text(405, "Method Not Allowed", "\(method) not allowed on /metrics")
                response.extraHeaders = [("Allow", "GET, HEAD")]
                return response
            }
            return HTTPResponse(status: 200, reason: "OK", contentType: HTTPResponse.metricsContentType, body: metrics())
        }
    }
}
