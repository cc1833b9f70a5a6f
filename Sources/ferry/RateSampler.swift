import ControlProtocol
import Engine
import Packets

/// Per-port rates for `stats` and `ferry ctl top`. The control thread samples every port's
/// counters once a second and keeps each port's last two samples with their monotonic times;
/// a rate is the difference between the two over the time between them. Sampled by the
/// server rather than by each client so that a one-shot `ferry ctl stats` has rates at once,
/// every client sees the same ones, and `stats-clear` (which only moves the reporting mark)
/// cannot disturb them.
final class RateSampler {
    static let period = 1.0

    private struct Sample {
        var time: Double
        var counters: CounterSnapshot
    }

    private struct Track {
        weak var port: NamedPort?
        var previous: Sample?
        var latest: Sample
    }

    /// By port object: a port added again under an old name starts without rates.
    private var tracks: [ObjectIdentifier: Track] = [:]
    private var nextSample = 0.0

    /// Seconds until the next sample is due.
    func timeout(now: Double) -> Double { max(0, nextSample - now) }

    /// Samples every port when a period has passed since the last sample.
    func sampleIfDue(_ ports: [NamedPort], now: Double) {
        guard now >= nextSample else { return }
        nextSample = now + Self.period
        var kept: [ObjectIdentifier: Track] = [:]
        for port in ports {
            let id = ObjectIdentifier(port)
            let sample = Sample(time: now, counters: port.port.counters.map(\.snapshot).reduce(CounterSnapshot(), +))
            if let track = tracks[id], track.port === port {
                kept[id] = Track(port: port, previous: track.latest, latest: sample)
            } else {
                kept[id] = Track(port: port, previous: nil, latest: sample)
            }
        }
        // A port that went takes its samples with it.
        tracks = kept
    }

    /// The port's rates over the last interval, nil before its second sample.
    func rates(of port: NamedPort) -> PortRates? {
        guard let track = tracks[ObjectIdentifier(port)], track.port === port, let before = track.previous else {
            return nil
        }
        return Self.rates(from: before.counters, at: before.time, to: track.latest.counters, at: track.latest.time)
    }

    /// Per second between two samples, to a tenth (a rate is an estimate; more digits only
    /// make the table wider). A counter that went down (its device replaced) gives 0.
    static func rates(from a: CounterSnapshot, at t0: Double, to b: CounterSnapshot, at t1: Double) -> PortRates {
        let interval = t1 - t0
        func perSecond(_ then: UInt64, _ now: UInt64, times factor: Double = 1) -> Double {
            guard interval > 0, now >= then else { return 0 }
            return (Double(now - then) * factor / interval * 10).rounded() / 10
        }
        return PortRates(rxPPS: perSecond(a.rxPackets, b.rxPackets), rxBPS: perSecond(a.rxBytes, b.rxBytes, times: 8),
                         txPPS: perSecond(a.txPackets, b.txPackets), txBPS: perSecond(a.txBytes, b.txBytes, times: 8),
                         dropsPPS: perSecond(a.totalDrops, b.totalDrops),
                         interval: (interval * 1000).rounded() / 1000)
    }
}
