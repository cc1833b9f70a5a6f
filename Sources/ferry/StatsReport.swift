import ControlProtocol
import Engine
import Packets
import Ports

/// Counters of every port and queue as the control socket reports them.
enum StatsReport {
    static func reply(_ sw: Switch) -> StatsReply {
        let ports = sw.ports.map { p in
            let perQueue = p.port.counters.map(\.snapshot)
            return PortStatistics(name: p.name, kind: p.port.kind, spec: p.spec.text, state: p.state,
                                  traffic: traffic(perQueue.reduce(CounterSnapshot(), +)),
                                  queues: perQueue.enumerated().map { QueueStatistics(queue: $0, traffic: traffic($1)) },
                                  analysis: AnalysisReport.analysis(of: p.port), generator: AnalysisReport.generator(of: p.port))
        }
        let workers = sw.workers.map { w in
            WorkerStatistics(id: w.id, cpu: w.cpu, busyLoops: w.busyLoops.load(ordering: .relaxed),
                             idleLoops: w.idleLoops.load(ordering: .relaxed), sleeps: w.sleeps.load(ordering: .relaxed),
                             asleepNanoseconds: w.asleepNanoseconds.load(ordering: .relaxed),
                             learningOverflows: w.learning.overflows.load(ordering: .relaxed),
                             senderMoves: w.senderMoves.load(ordering: .relaxed))
        }
        let f = sw.decisions
        return StatsReply(ports: ports, workers: workers,
                          switch: SwitchStatistics(unicast: f.unicast, flooded: f.flooded, hairpin: f.hairpin,
                                                   fdb: fdbCounters(sw)))
    }

    /// The database's counters and limits; `show fdb` reports them too.
    static func fdbCounters(_ sw: Switch) -> FDBCountersInfo {
        let d = sw.database.counters
        return FDBCountersInfo(entries: d.entries, learned: d.learned, moves: d.moves, overflows: d.overflows,
                               aged: d.aged, capacity: sw.database.capacity, agingTime: sw.database.agingTime)
    }

    static func traffic(_ s: CounterSnapshot) -> TrafficCounters {
        TrafficCounters(rxPackets: s.rxPackets, rxBytes: s.rxBytes, txPackets: s.txPackets, txBytes: s.txBytes,
                        drops: Dictionary(uniqueKeysWithValues: s.drops.map { ($0.key.name, $0.value) }),
                        offloads: Dictionary(uniqueKeysWithValues: s.offloads.map { ($0.key.name, $0.value) }))
    }
}
