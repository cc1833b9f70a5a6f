import Engine
import Glibc
import Logging
import Platform

/// What systemd learns from a `Type=notify` unit (packaging/ferry.service): READY=1 once
/// every port is open and the control socket listens, STOPPING=1 when a signal stops
/// it, and WATCHDOG=1 from the control thread at half the unit's WatchdogSec=, so a
/// control thread that hangs (and with it learning, aging, the control socket) gets
/// Ferry restarted. Outside systemd ($NOTIFY_SOCKET unset) it does nothing.
final class ServiceNotifier: ControlLoopClient {
    private let socket: ServiceManagerSocket?
    /// Seconds between WATCHDOG=1, half the manager's timeout as sd_watchdog_enabled(3)
    /// advises; nil when the unit has no watchdog or it is meant for another process.
    let watchdogPeriod: Double?
    private var nextPing = 0.0
    private let logger: Logger
    private var failureLogged = false

    init(logger: Logger, socket: ServiceManagerSocket? = ServiceManagerSocket(),
         watchdogMicroseconds: String? = getenv("WATCHDOG_USEC").map { String(cString: $0) },
         watchdogPID: String? = getenv("WATCHDOG_PID").map { String(cString: $0) }) {
        self.logger = logger
        self.socket = socket
        if socket != nil, let text = watchdogMicroseconds, let usec = UInt64(text), usec > 0,
           watchdogPID.map({ pid_t($0) == getpid() }) ?? true {
            watchdogPeriod = Double(usec) / 2_000_000
        } else {
            watchdogPeriod = nil
        }
    }

    func ready(status: String) {
        send(["READY=1", "STATUS=\(status)"])
        nextPing = MonotonicClock.now()
    }

    func stopping() { send(["STOPPING=1", "STATUS=stopping"]) }

    var pollDescriptors: [Int32] { [] }

    func timeout(now: Double) -> Double? {
        guard watchdogPeriod != nil, nextPing > 0 else { return nil }
        return max(0, nextPing - now)
    }

    func service(now: Double) {
        guard let watchdogPeriod, nextPing > 0, now >= nextPing else { return }
        send(["WATCHDOG=1"])
        nextPing = now + watchdogPeriod
    }

    private func send(_ assignments: [String]) {
        guard let socket else { return }
        do throws(SystemError) { try socket.send(assignments) } catch {
            // Once: a manager that went away would otherwise fill the log every period.
            if !failureLogged { logger.warning("cannot notify the service manager at \(socket.path): \(error)") }
            failureLogged = true
        }
    }
}
