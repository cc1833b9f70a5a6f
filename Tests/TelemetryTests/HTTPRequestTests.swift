import Telemetry
import XCTest

final class HTTPRequestTests: XCTestCase {
    private func parse(_ text: String) -> HTTPRequestHead { HTTPRequestHead.parse(Array(text.utf8)) }

    private func respond(_ text: String) -> HTTPResponse? {
        MetricsRoute.respond(to: parse(text)) { Array("ferry_x 1\n".utf8) }
    }

    func testAScrapeIsParsedOnceItsHeadIsComplete() {
        XCTAssertEqual(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n"), .incomplete)
        XCTAssertEqual(parse("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"),
                       .request(method: "GET", path: "/metrics"))
        XCTAssertEqual(parse("\r\nGET /metrics?name[]=x HTTP/1.0\r\n\r\n"), .request(method: "GET", path: "/metrics"))
    }

    /// The head may arrive a byte at a time: incomplete until the last byte.
    func testByteByByte() {
        let request = Array("GET /metrics HTTP/1.1\r\nUser-Agent: Prometheus/2.53\r\n\r\n".utf8)
        for end in 0..<request.count {
            XCTAssertEqual(HTTPRequestHead.parse(Array(request[..<end])), .incomplete, "after \(end) bytes")
        }
        XCTAssertEqual(HTTPRequestHead.parse(request), .request(method: "GET", path: "/metrics"))
    }

    func testMalformedRequestsAreBad() {
        for text in ["GET /metrics\r\n\r\n", "GET /metrics HTTP/2.0\r\n\r\n", "get /metrics HTTP/1.1\r\n\r\n",
                     "GET  /metrics HTTP/1.1\r\n\r\n", "\r\n\r\n", "GET /metrics HTTP/1.1 extra\r\n\r\n"] {
            guard case .bad = parse(text) else { return XCTFail("\(text.debugDescription) was not refused") }
        }
        XCTAssertEqual(respond("BREW /pot HTCPCP/1.0\r\n\r\n")?.status, 400)
    }

    func testAHeadThatNeverEndsIsBad() {
        let flood = "GET /metrics HTTP/1.1\r\n" + String(repeating: "X-Pad: 0123456789\r\n", count: 500)
        guard case .bad = parse(flood) else { return XCTFail("an endless head was not refused") }
    }

    func testRoutes() throws {
        let ok = try XCTUnwrap(respond("GET /metrics HTTP/1.1\r\n\r\n"))
        XCTAssertEqual(ok.status, 200)
        XCTAssertEqual(ok.contentType, "text/plain; version=0.0.4; charset=utf-8")
        let wire = String(decoding: ok.bytes(), as: UTF8.self)
        XCTAssertTrue(wire.hasPrefix("HTTP/1.1 200 OK\r\n"), wire)
        XCTAssertTrue(wire.contains("\r\nContent-Length: 10\r\n"), wire)
        XCTAssertTrue(wire.hasSuffix("\r\n\r\nferry_x 1\n"), wire)
        XCTAssertFalse(String(decoding: ok.bytes(includingBody: false), as: UTF8.self).contains("ferry_x"))
        XCTAssertEqual(respond("GET / HTTP/1.1\r\n\r\n")?.status, 404)
        XCTAssertEqual(respond("GET /metricsx HTTP/1.1\r\n\r\n")?.status, 404)
        let post = try XCTUnwrap(respond("POST /metrics HTTP/1.1\r\n\r\n"))
        XCTAssertEqual(post.status, 405)
        XCTAssertTrue(String(decoding: post.bytes(), as: UTF8.self).contains("\r\nAllow: GET, HEAD\r\n"))
        XCTAssertNil(respond("GET /metrics HTTP/1.1\r\n"))
    }
}
