import Engine
import Logging
import Platform
import Telemetry

/// The control socket and the metrics endpoint of a running lab, when asked for: the
/// generator's and the sink's live counters in `ferry ctl stats --json` and /metrics.
final class LabServices {
    private let controlServer: ControlServer?
    private let metricsServer: MetricsServer?
    private let captures: CaptureService

    init(switch sw: Switch, control: String?, metrics: String?, logger: Logger) throws {
        captures = CaptureService(switch: sw, logger: logger)
        if let control {
            do {
                controlServer = try ControlServer(path: control, permissions: nil, switch: sw, captures: captures,
                                                  logger: logger)
            } catch {
                logger.critical("control socket \(control): \(error)")
                sw.stop()
                throw ExitStatus.unavailable
            }
            sw.control.add(controlServer!)
            sw.control.add(captures)
        } else {
            controlServer = nil
        }
        if let metrics, let address = ListenAddress(metrics) {
            do {
                let captures = captures
                metricsServer = try MetricsServer(address: address, logger: logger) {
                    MetricsExposition.render(sw, captures: captures)
                }
            } catch {
                logger.critical("metrics \(metrics): \(error)")
                controlServer?.close()
                sw.stop()
                throw ExitStatus.unavailable
            }
            sw.control.add(metricsServer!)
        } else {
            metricsServer = nil
        }
    }

    func close() {
        captures.close()
        controlServer?.close()
        metricsServer?.close()
    }
}
