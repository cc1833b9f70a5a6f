import Engine
import Foundation
import Packets

/// Counters of every port and queue as the control socket reports them.
enum StatsReport {
    static func json(_ sw: Switch) -> [String: Any] {
        var ports: [[String: Any]] = []
        for p in sw.ports {
            let perQueue = p.port.counters.map(\.snapshot)
            let total = perQueue.reduce(CounterSnapshot(), +)
            var entry = counters(total)
            entry["name"] = p.name
            entry["kind"] = p.port.kind
            entry["spec"] = p.spec.text
            entry["state"] = p.state
            entry["queues"] = perQueue.enumerated().map { i, s -> [String: Any] in
                var q = counters(s)
                q["queue"] = i
                return q
            }
            ports.append(entry)
        }
        let workers = sw.workers.map { w -> [String: Any] in
            ["id": w.id, "cpu": w.cpu.map { $0 as Any } ?? NSNull(),
             "busy_loops": w.busyLoops.load(ordering: .relaxed), "idle_loops": w.idleLoops.load(ordering: .relaxed),
             "sleeps": w.sleeps.load(ordering: .relaxed), "asleep_ns": w.asleepNanoseconds.load(ordering: .relaxed),
             "learning_overflows": w.learning.overflows.load(ordering: .relaxed)]
        }
        return ["ports": ports, "workers": workers, "switch": switchCounters(sw)]
    }

    /// The forwarding decision's and the database's counters.
    static func switchCounters(_ sw: Switch) -> [String: Any] {
        let f = sw.decisions
        return ["unicast": f.unicast, "flooded": f.flooded, "hairpin": f.hairpin,
                "fdb": fdbCounters(sw)]
    }

    /// The database's counters and limits; `show fdb` reports them too.
    static func fdbCounters(_ sw: Switch) -> [String: Any] {
        let d = sw.database.counters
        return ["entries": d.entries, "learned": d.learned, "moves": d.moves, "overflows": d.overflows,
                "aged": d.aged, "capacity": sw.database.capacity, "aging_time": sw.database.agingTime]
    }

    static func counters(_ s: CounterSnapshot) -> [String: Any] {
        var drops: [String: Any] = [:]
        for (r, v) in s.drops { drops[r.name] = v }
        var offloads: [String: Any] = [:]
        for c in OffloadCounter.allCases { offloads[c.name] = s.offloads[c] ?? 0 }
        return ["rx_packets": s.rxPackets, "rx_bytes": s.rxBytes, "tx_packets": s.txPackets, "tx_bytes": s.txBytes,
                "drops": drops, "offloads": offloads]
    }
}
