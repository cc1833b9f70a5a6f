import Engine
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
        let busy = sw.worker.busyLoops.load(ordering: .relaxed)
        let idle = sw.worker.idleLoops.load(ordering: .relaxed)
        let sleeps = sw.worker.sleeps.load(ordering: .relaxed)
        return ["ports": ports, "workers": [["id": 0, "busy_loops": busy, "idle_loops": idle, "sleeps": sleeps]]]
    }

    static func counters(_ s: CounterSnapshot) -> [String: Any] {
        var drops: [String: Any] = [:]
        for (r, v) in s.drops { drops[r.name] = v }
        return ["rx_packets": s.rxPackets, "rx_bytes": s.rxBytes, "tx_packets": s.txPackets, "tx_bytes": s.txBytes,
                "drops": drops]
    }
}
