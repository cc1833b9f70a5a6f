import ArgumentParser
import Foundation
import XCTest
@testable import ferry

/// Every `ferry ...` command line the README and docs/*.md show goes through Ferry's own
/// argument parser (with each command's `validate()`), so a renamed option or a changed
/// value syntax cannot leave the documentation behind. Command lines in code blocks are
/// taken as written; synopses in running text (`ferry ctl show fdb [--vlan N]`) are
/// taken with every optional part given and each placeholder replaced by an example.
final class DocumentedCommandLineTests: XCTestCase {
    func testEveryDocumentedCommandLineParses() throws {
        let lines = try DocumentedCommandLines.all()
        XCTAssertGreaterThan(lines.count, 40, "the docs show more ferry command lines than that; is the extractor broken?")
        for line in lines {
            do {
                _ = try Ferry.parseAsRoot(line.arguments)
            } catch {
                // --help and --version are clean exits, not failures.
                if Ferry.exitCode(for: error) == .success { continue }
                // Running text also names a command without its arguments ("`ferry check`
                // validates..."): a reference, right when the command exists.
                if line.inProse && Self.namesACommand(line.arguments) { continue }
                XCTFail("\(line.place): `ferry \(line.arguments.joined(separator: " "))` does not parse: "
                        + Ferry.message(for: error))
            }
        }
    }

    /// `ferry ctl capture` (no options, no arguments) is a command the parser knows.
    static func namesACommand(_ words: [String]) -> Bool {
        var command: ParsableCommand.Type = Ferry.self
        for word in words {
            guard let sub = command.configuration.subcommands.first(where: { $0._commandName == word }) else {
                return false
            }
            command = sub
        }
        return !words.isEmpty
    }

    func testAReferenceMustNameARealCommand() {
        XCTAssertTrue(Self.namesACommand(["ctl", "capture"]))
        XCTAssertFalse(Self.namesACommand(["ctl", "captur"]))
        XCTAssertFalse(Self.namesACommand(["run", "--port"]))
    }

    func testACommandLineTheParserRefusesIsCaught() throws {
        let wrong = DocumentedCommandLines.commandLines(in: "```sh\nferry run --port tap:x,queues=0\n```\n", file: "t.md")
        XCTAssertEqual(wrong.map(\.arguments), [["run", "--port", "tap:x,queues=0"]])
        XCTAssertThrowsError(try Ferry.parseAsRoot(wrong[0].arguments))
    }

    func testSynopsesAreExpandedAndPipesCut() {
        let text = """
            See `ferry ctl capture PORT [--direction rx|tx|both] [--count N] -w FILE|-` and `ferry run --port SPEC...`.
            ```sh
            $ .build/release/ferry ctl capture vm0 -w - | tcpdump -r -   # watch it
            ferry run --port vhost:/tmp/a.sock \\
                --port "tap:t0,name=host"
            ```
            """
        XCTAssertEqual(DocumentedCommandLines.commandLines(in: text, file: "t.md").map(\.arguments), [
            ["ctl", "capture", "vm0", "--direction", "rx", "--count", "10", "-w", "/tmp/ferry.pcap"],
            ["run", "--port", "sink"],
            ["ctl", "capture", "vm0", "-w", "-"],
            ["run", "--port", "vhost:/tmp/a.sock", "--port", "tap:t0,name=host"],
        ])
    }
}

/// The `ferry` command lines in Markdown text.
enum DocumentedCommandLines {
    struct Line {
        let place: String
        let arguments: [String]
        /// From running text (a code span), not a code block.
        let inProse: Bool
    }

    /// README.md and docs/*.md of this checkout.
    static func all() throws -> [Line] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let docs = root.appendingPathComponent("docs")
        let names = try FileManager.default.contentsOfDirectory(atPath: docs.path).filter { $0.hasSuffix(".md") }.sorted()
        var files = [root.appendingPathComponent("README.md")] + names.map { docs.appendingPathComponent($0) }
        files.removeAll { !FileManager.default.fileExists(atPath: $0.path) }
        return try files.flatMap { url in
            commandLines(in: try String(contentsOf: url, encoding: .utf8), file: url.lastPathComponent)
        }
    }

    static func commandLines(in text: String, file: String) -> [Line] {
        var found: [Line] = []
        var inCode = false
        // A block tagged as something other than a shell (```text, ```json, ...) holds no command lines.
        var inOtherCode = false
        var pending = ""
        var pendingLine = 0
        // Running text is read a paragraph at a time: a code span may wrap onto the next line.
        var paragraph = ""
        var paragraphLine = 0
        func endParagraph() {
            for span in codeSpans(paragraph) {
                if let arguments = ferryArguments(words(span), expandSynopsis: true) {
                    found.append(Line(place: "\(file):\(paragraphLine)", arguments: arguments, inProse: true))
                }
            }
            paragraph = ""
        }
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw)
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("```") {
                endParagraph()
                if inCode || inOtherCode {
                    (inCode, inOtherCode) = (false, false)
                } else if ["", "sh", "bash", "shell", "console"].contains(trimmed.dropFirst(3)) {
                    inCode = true
                } else {
                    inOtherCode = true
                }
                continue
            }
            if inOtherCode { continue }
            if inCode {
                if pending.isEmpty { pendingLine = n + 1 }
                pending += line
                if pending.hasSuffix("\\") {
                    pending.removeLast()
                    continue
                }
                if let arguments = ferryArguments(words(pending), expandSynopsis: false) {
                    found.append(Line(place: "\(file):\(pendingLine)", arguments: arguments, inProse: false))
                }
                pending = ""
            } else if line.trimmingCharacters(in: .whitespaces).isEmpty || line.hasPrefix("|") || line.hasPrefix("#") {
                // A blank line, a table row or a heading ends a paragraph (a row is one by itself).
                endParagraph()
                if line.hasPrefix("|") {
                    paragraph = line
                    paragraphLine = n + 1
                    endParagraph()
                }
            } else {
                if paragraph.isEmpty { paragraphLine = n + 1 }
                paragraph += (paragraph.isEmpty ? "" : " ") + line
            }
        }
        endParagraph()
        return found
    }

    /// The text between single backticks.
    static func codeSpans(_ line: String) -> [String] {
        let parts = line.split(separator: "`", omittingEmptySubsequences: false)
        // A table cell escapes its bars: `auto\|native`.
        return stride(from: 1, to: parts.count, by: 2).map { String(parts[$0]).replacingOccurrences(of: "\\|", with: "|") }
    }

    /// Shell words up to the end of the first command (`|`, `;`, `&&`, `>`, `#`), quotes removed.
    static func words(_ text: String) -> [String] {
        var words: [String] = []
        var current = ""
        var inWord = false
        var quote: Character?
        for c in text {
            if let q = quote {
                if c == q { quote = nil } else { current.append(c) }
                continue
            }
            switch c {
            case "'", "\"":
                quote = c
                inWord = true
            case " ", "\t":
                if inWord { words.append(current) }
                current = ""
                inWord = false
            // An operator after a space ends the command; inside a word (`rx|tx`) it is text.
            case _ where !inWord && "|;><&#".contains(c):
                return words
            default:
                current.append(c)
                inWord = true
            }
        }
        if inWord { words.append(current) }
        return words
    }

    /// The arguments after `ferry` (or `.../ferry`, after a `$` or `#` prompt or `sudo`),
    /// or nil when the words are not a ferry command line.
    static func ferryArguments(_ words: [String], expandSynopsis: Bool) -> [String]? {
        var rest = words[...]
        while let first = rest.first, ["$", "sudo"].contains(first) { rest = rest.dropFirst() }
        guard let command = rest.first, command == "ferry" || command.hasSuffix("/ferry") else { return nil }
        let arguments = Array(rest.dropFirst())
        return expandSynopsis ? arguments.flatMap(expanded) : arguments
    }

    /// Examples for the placeholders the docs write in capitals.
    static let examples: [String: String] = [
        "FILE": "/tmp/ferry.pcap", "PATH": "/run/ferry/ferry.sock", "SPEC": "sink", "NAME": "vm0", "PORT": "vm0",
        "MAC": "52:54:00:12:34:56", "N": "10", "USER": "ferry", "GROUP": "ferry", "ADDR:PORT": "127.0.0.1:9469",
        "IFNAME": "eth0", "MODE": "0660", "S": "10",
    ]

    /// One synopsis word as a command line has it: `[--json]` → `--json`, `rx|tx` → `rx`,
    /// `SPEC...` → `sink`.
    static func expanded(_ word: String) -> [String] {
        var w = word.replacingOccurrences(of: "[", with: "").replacingOccurrences(of: "]", with: "")
        if w.hasSuffix("...") { w.removeLast(3) }
        if let bar = w.firstIndex(of: "|") { w = String(w[..<bar]) }
        if w.isEmpty { return [] }
        if let example = examples[w] { return [example] }
        return [w]
    }
}
