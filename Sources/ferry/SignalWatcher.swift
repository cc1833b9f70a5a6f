import Engine
import CFerry
import Glibc
import Platform

/// Blocks the given signals in every thread (set before any thread starts) and
/// reports them through a signalfd that the control loop polls.
final class SignalWatcher: ControlLoopClient {
    private let fd: Int32
    var onSignal: (Int32) -> Void = { _ in }

    init(signals: [Int32]) throws {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        fd = try syscall("signalfd") { signalfd(-1, &set, Int32(SFD_NONBLOCK) | Int32(SFD_CLOEXEC)) }
    }

    deinit { close(fd) }

    var pollDescriptors: [Int32] { [fd] }
    func timeout(now: Double) -> Double? { nil }

    func service(now: Double) {
        var info = signalfd_siginfo()
        while read(fd, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
            onSignal(Int32(info.ssi_signo))
        }
    }
}
