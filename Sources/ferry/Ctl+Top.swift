import ArgumentParser
import ControlProtocol
import Glibc

extension Ctl {
    struct Top: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A live view of every port's rates, busiest first, refreshed every second.",
            discussion: """
                Frames, bits and drops per second per port, sorted by bits per second (rx + tx),
                like top or a watch of `ovs-appctl dpif-netdev/pmd-stats-show`. On a terminal
                the screen is redrawn and q or Ctrl-C quits; otherwise (a pipe, a file) a table
                is printed each second, a blank line between, until --iterations or Ctrl-C.
                drops is the count since Ferry started or the last `ferry ctl stats --clear`.
                Example: ferry ctl top --iterations 5 | tee top.log
                """)

        @OptionGroup var connection: ControlOptions

        @Option(help: "Stop after this many refreshes (default: until q or Ctrl-C).")
        var iterations: Int?

        func validate() throws {
            if let iterations, iterations < 1 { throw ValidationError("--iterations must be at least 1") }
        }

        func run() throws {
            let ferry = try ControlConnection(connection.control)
            let terminal = RawTerminal()
            defer { terminal?.restore() }
            var shown = 0
            while true {
                let reply = try ferry.call(.stats, as: StatsReply.self)
                shown += 1
                let lines = Self.view(reply, interactive: terminal != nil)
                if terminal != nil {
                    // Home and clear, then the view: the screen holds one table.
                    print("\u{1B}[H\u{1B}[2J" + lines.joined(separator: "\n"))
                } else {
                    if shown > 1 { print() }
                    lines.forEach { print($0) }
                }
                fflush(nil)  // every output stream: the view appears now, even through a pipe
                if let iterations, shown >= iterations { return }
                if let terminal {
                    if terminal.waitForQuit(seconds: 1) { return }
                } else {
                    usleep(1_000_000)
                }
            }
        }

        /// A summary line, then the ports busiest first; ports without rates yet come last.
        static func view(_ reply: StatsReply, interactive: Bool) -> [String] {
            let ports = reply.ports.sorted { a, b in
                let (x, y) = (a.rates.map { $0.rxBPS + $0.txBPS } ?? -1, b.rates.map { $0.rxBPS + $0.txBPS } ?? -1)
                return x != y ? x > y : a.name < b.name
            }
            let rated = reply.ports.compactMap(\.rates)
            func total(_ rate: (PortRates) -> Double) -> String { RateText.format(rated.map(rate).reduce(0, +)) }
            var summary = "ports \(reply.ports.count)  rx \(total(\.rxPPS)) pps \(total(\.rxBPS)) bps"
                + "  tx \(total(\.txPPS)) pps \(total(\.txBPS)) bps  drops \(total(\.dropsPPS))/s"
            if interactive { summary += "  (q quits)" }
            var table = TextTable([.init("port"), .init("kind"), .init("rx_pps", .right), .init("rx_bps", .right),
                                   .init("tx_pps", .right), .init("tx_bps", .right), .init("drops_pps", .right),
                                   .init("drops", .right)])
            for p in ports {
                table.append([p.name, p.kind] + RateText.cells(p.rates) + [String(p.traffic.drops.values.reduce(0, +))])
            }
            return [summary, ""] + table.lines
        }
    }
}
