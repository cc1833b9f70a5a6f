import Engine
import Packets
import Ports
import Prometheus

/// The metrics endpoint's text: every counter `ferry ctl stats --json` and
/// `show ports` report, read from the same sources at scrape time, in
/// Prometheus' text format through swift-prometheus' registry and encoder.
///
/// The switch's counters live in the data path (relaxed atomics the workers
/// write), not in the registry, so each scrape fills a fresh registry with
/// the values read now: Prometheus counters are cumulative, and ours are too.
/// Names and labels: docs/METRICS.md.
public enum MetricsExposition {
    public static func render(_ sw: Switch, captures: CaptureService?) -> [UInt8] {
        let registry = PrometheusCollectorRegistry()
        func counter(_ name: String, _ help: String, _ labels: [(String, String)], _ value: UInt64) {
            registry.makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
                .increment(by: Int64(clamping: value))
        }
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)], _ value: Double) {
            registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
                .set(to: value)
        }

        var remoteMACs: [UInt16: Int]?
        for p in sw.ports {
            gauge("ferry_port_info", "A port: its kind and VLAN mode (always 1)",
                  [("port", p.name), ("kind", p.port.kind), ("vlan", p.vlan.description)], 1)
            for (q, queue) in p.port.counters.enumerated() {
                let s = queue.snapshot
                let labels = [("port", p.name), ("queue", String(q))]
                counter("ferry_port_rx_packets_total", "Frames Ferry took from the port", labels, s.rxPackets)
                counter("ferry_port_rx_bytes_total", "Bytes of the frames Ferry took from the port", labels, s.rxBytes)
                counter("ferry_port_tx_packets_total", "Frames Ferry handed to the port", labels, s.txPackets)
                counter("ferry_port_tx_bytes_total", "Bytes of the frames Ferry handed to the port", labels, s.txBytes)
                for reason in DropReason.allCases {
                    counter("ferry_port_dropped_total", "Frames dropped on the port, by reason", labels + [("reason", reason.name)],
                            s.drops[reason] ?? 0)
                }
                for work in OffloadCounter.allCases {
                    counter("ferry_port_offload_total",
                            "Checksum and segmentation work for frames handed to the port, by kind",
                            labels + [("kind", work.name)], s.offloads[work] ?? 0)
                }
            }
            if let steering = p.port.steering {
                let stats = steering.statistics()
                let labels = [("port", p.name)]
                counter("ferry_xdp_steered_total", "Frames the uplink's XDP program redirected to Ferry", labels, stats.steered)
                counter("ferry_xdp_passed_total", "Frames the uplink's XDP program left to the kernel", labels, stats.passed)
                counter("ferry_xdp_malformed_total", "Frames too short for the XDP program to read", labels, stats.malformed)
                gauge("ferry_xdp_steered_addresses", "Guest addresses in the XDP program's map", labels,
                      Double(steering.guests().count))
            }
            if let analyser = p.port.analyser {
                let a = analyser.snapshot
                let labels = [("port", p.name)]
                let framesHelp = "Frames the sink was handed, with a generator's stamp or without"
                counter("ferry_analyser_frames_total", framesHelp, labels + [("stamp", "yes")], a.stamped)
                counter("ferry_analyser_frames_total", framesHelp, labels + [("stamp", "no")], a.unstamped)
                gauge("ferry_analyser_lost", "Sequence numbers skipped and not seen since (a late frame takes itself off)",
                      labels, Double(a.lost))
                counter("ferry_analyser_reordered_total", "Stamped frames that came after a later one of their flow",
                        labels, a.reordered)
                counter("ferry_analyser_duplicates_total", "Stamped frames that came twice", labels, a.duplicates)
                counter("ferry_analyser_late_total", "Stamped frames more than 64 behind their flow", labels, a.late)
                for (quantile, fraction) in [("0.5", 0.5), ("0.99", 0.99), ("0.999", 0.999), ("1", 1.0)] {
                    gauge("ferry_analyser_latency_seconds", "Latency of stamped frames, generator to sink, by quantile",
                          labels + [("quantile", quantile)], Double(a.latency.percentile(fraction)) / 1e9)
                }
            }
            if let gen = p.port.generator {
                counter("ferry_generator_lagged_total", "Frames a generator's schedule gave up: its worker was over 50 ms late",
                        [("port", p.name)], gen.laggedFrames)
            }
            if let tunnel = p.port.tunnel, tunnel.endpoints.count > 0 {
                for number in 1...tunnel.endpoints.count {
                    let c = tunnel.endpoints.counters(number)
                    let labels = [("port", p.name), ("vtep", "\(tunnel.endpoints.address(number))")]
                    counter("ferry_vtep_rx_packets_total", "Datagrams a vxlan port took from a remote VTEP", labels, c.rxPackets)
                    counter("ferry_vtep_rx_bytes_total", "Inner frame bytes from a remote VTEP", labels, c.rxBytes)
                    counter("ferry_vtep_tx_packets_total", "Datagrams a vxlan port sent to a remote VTEP", labels, c.txPackets)
                    counter("ferry_vtep_tx_bytes_total", "Inner frame bytes to a remote VTEP", labels, c.txBytes)
                }
            }
            if let evpn = p.port.tunnel?.kernelFDB?.counters {
                let labels = [("port", p.name)]
                // A walk of the table, once per scrape and only with an EVPN port.
                if remoteMACs == nil {
                    remoteMACs = Dictionary(grouping: sw.database.entries(now: 0).filter(\.isPinnedRemote), by: \.port.rawValue)
                        .mapValues(\.count)
                }
                gauge("ferry_evpn_remote_macs", "Remote MACs BGP EVPN placed behind the port's VTEPs", labels,
                      Double(remoteMACs?[p.index.rawValue] ?? 0))
                counter("ferry_evpn_refused_total", "Messages from the kernel's bridge table an EVPN port refused",
                        labels, evpn.refused)
                counter("ferry_evpn_write_failures_total", "Local MACs the kernel's bridge table would not take or give up",
                        labels, evpn.writeFailures)
                counter("ferry_evpn_overruns_total", "Times an EVPN port lost kernel changes and read the table again",
                        labels, evpn.overruns)
            }
            if let captures {
                for direction in CaptureDirection.allCases {
                    let labels = [("port", p.name), ("direction", direction.name)]
                    counter("ferry_capture_dropped_total", "Captured frames lost before reaching the client, by reason",
                            labels + [("reason", "ring_full")], captures.ringDrops(port: p.index, direction: direction))
                    counter("ferry_capture_dropped_total", "Captured frames lost before reaching the client, by reason",
                            labels + [("reason", "slow_reader")], captures.slowReaderDrops[p.name]?[direction] ?? 0)
                }
            }
        }
        if let captures {
            gauge("ferry_captures", "Captures running", [], Double(captures.captureCount))
        }

        let decisions = sw.decisions
        let help = "Forwarding decisions: to one learned port, flooded, or dropped as hairpin"
        counter("ferry_forwarding_decisions_total", help, [("decision", "unicast")], decisions.unicast)
        counter("ferry_forwarding_decisions_total", help, [("decision", "flooded")], decisions.flooded)
        counter("ferry_forwarding_decisions_total", help, [("decision", "hairpin")], decisions.hairpin)

        let fdb = sw.database.counters
        gauge("ferry_fdb_entries", "Entries in the forwarding database", [], Double(fdb.entries))
        gauge("ferry_fdb_capacity", "Most entries the forwarding database holds", [], Double(sw.database.capacity))
        counter("ferry_fdb_learned_total", "Addresses learned", [], fdb.learned)
        counter("ferry_fdb_moves_total", "Learned addresses that moved to another port", [], fdb.moves)
        counter("ferry_fdb_overflows_total", "Learns and static adds refused for lack of room", [], fdb.overflows)
        counter("ferry_fdb_aged_total", "Learned entries removed for age", [], fdb.aged)

        for w in sw.workers {
            let labels = [("worker", String(w.id))]
            counter("ferry_worker_busy_loops_total", "Worker loops that moved at least one frame", labels,
                    w.busyLoops.load(ordering: .relaxed))
            counter("ferry_worker_idle_loops_total", "Worker loops that found no frame", labels,
                    w.idleLoops.load(ordering: .relaxed))
            counter("ferry_worker_sleeps_total", "Times the worker slept waiting for a kick", labels,
                    w.sleeps.load(ordering: .relaxed))
            registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "ferry_worker_asleep_seconds_total", unitName: "",
                                                                  helpText: "Seconds the worker spent asleep in poll"),
                                 labels: labels)
                .increment(by: Double(w.asleepNanoseconds.load(ordering: .relaxed)) / 1e9)
            counter("ferry_worker_learning_overflows_total", "New addresses the worker's learning queue had no room for",
                    labels, w.learning.overflows.load(ordering: .relaxed))
            counter("ferry_worker_sender_moves_total", "Times the worker moved to the CPU of a TAP's sender", labels,
                    w.senderMoves.load(ordering: .relaxed))
        }

        var text: [UInt8] = []
        registry.emit(into: &text)
        return text
    }
}
