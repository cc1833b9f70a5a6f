import ControlProtocol
import Engine

/// What `stats-clear` remembers: every counter as it stood then, so that `stats` reports
/// what was counted since. The counters themselves run on from Ferry's start: /metrics
/// serves them to Prometheus, whose counters must never go down. One mark for every client
/// (each `ferry ctl` is a new connection), as `ovs-appctl dpif-netdev/pmd-stats-clear` keeps
/// one for every viewer of `pmd-stats-show`.
struct CounterMark {
    /// Monotonic seconds when the mark was set.
    let time: Double
    /// By port object, not by name or index: a port removed and added again under the same
    /// name counts from zero, and the old port's counts must not be taken off the new one's.
    private let ports: [ObjectIdentifier: PortMark]
    private let workers: [Int: WorkerStatistics]
    private let switchCounters: SwitchStatistics

    private struct PortMark {
        weak var port: NamedPort?
        let statistics: PortStatistics
    }

    /// `absolute.ports[i]` is `ports[i]`'s (StatsReport.reply walks the switch's ports in order).
    init(_ absolute: StatsReply, ports: [NamedPort], time: Double) {
        self.time = time
        var marks: [ObjectIdentifier: PortMark] = [:]
        for (port, statistics) in zip(ports, absolute.ports) {
            marks[ObjectIdentifier(port)] = PortMark(port: port, statistics: statistics)
        }
        self.ports = marks
        workers = Dictionary(absolute.workers.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        switchCounters = absolute.switch
    }

    /// The counts since the mark; a port added after it counts from when it was added.
    func counts(since absolute: StatsReply, ports: [NamedPort]) -> StatsReply {
        var reply = absolute
        for (i, port) in zip(reply.ports.indices, ports) {
            guard let mark = self.ports[ObjectIdentifier(port)], mark.port === port else { continue }
            reply.ports[i].traffic = reply.ports[i].traffic.since(mark.statistics.traffic)
            for q in reply.ports[i].queues.indices {
                guard let before = mark.statistics.queues.first(where: { $0.queue == reply.ports[i].queues[q].queue })
                else { continue }
                reply.ports[i].queues[q].traffic = reply.ports[i].queues[q].traffic.since(before.traffic)
            }
        }
        for w in reply.workers.indices {
            guard let before = workers[reply.workers[w].id] else { continue }
            reply.workers[w] = reply.workers[w].since(before)
        }
        reply.switch = reply.switch.since(switchCounters)
        return reply
    }
}

/// `now - then` for a counter that only grows; one below its mark belongs to something that
/// started counting again after the mark (a port's device replaced), and counts whole.
private func counted(_ now: UInt64, _ then: UInt64) -> UInt64 { now >= then ? now - then : now }

/// Per-name counts since the mark; names that counted nothing since are left out, as the
/// reply leaves out names that never counted.
private func counted(_ now: [String: UInt64], _ then: [String: UInt64]) -> [String: UInt64] {
    now.reduce(into: [:]) { result, entry in
        let n = counted(entry.value, then[entry.key] ?? 0)
        if n > 0 { result[entry.key] = n }
    }
}

extension TrafficCounters {
    fileprivate func since(_ mark: TrafficCounters) -> TrafficCounters {
        TrafficCounters(rxPackets: counted(rxPackets, mark.rxPackets), rxBytes: counted(rxBytes, mark.rxBytes),
                        txPackets: counted(txPackets, mark.txPackets), txBytes: counted(txBytes, mark.txBytes),
                        drops: counted(drops, mark.drops),
                        offloads: offloads.map { counted($0, mark.offloads ?? [:]) })
    }
}

extension WorkerStatistics {
    fileprivate func since(_ mark: WorkerStatistics) -> WorkerStatistics {
        WorkerStatistics(id: id, cpu: cpu, busyLoops: counted(busyLoops, mark.busyLoops),
                         idleLoops: counted(idleLoops, mark.idleLoops), sleeps: counted(sleeps, mark.sleeps),
                         asleepNanoseconds: counted(asleepNanoseconds, mark.asleepNanoseconds),
                         learningOverflows: counted(learningOverflows, mark.learningOverflows),
                         senderMoves: counted(senderMoves, mark.senderMoves))
    }
}

extension SwitchStatistics {
    /// `entries`, `capacity` and `aging_time` are states, not counts: they stay as they are.
    fileprivate func since(_ mark: SwitchStatistics) -> SwitchStatistics {
        var f = fdb
        f.learned = counted(fdb.learned, mark.fdb.learned)
        f.moves = counted(fdb.moves, mark.fdb.moves)
        f.overflows = counted(fdb.overflows, mark.fdb.overflows)
        f.aged = counted(fdb.aged, mark.fdb.aged)
        return SwitchStatistics(unicast: counted(unicast, mark.unicast), flooded: counted(flooded, mark.flooded),
                                hairpin: counted(hairpin, mark.hairpin), fdb: f)
    }
}
