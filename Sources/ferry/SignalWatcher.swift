import Engine
import CFerry
import Glibc
import Platform

/// Blocks the given signals in every thread (set before any thread starts) and
/// reports them through a signalfd that the control loop polls.
final class SignalWatcher: ControlLoopClient {
    private let descriptor: FileDescriptor
    var onSignal: (Int32) -> Void = { _ in }

    init(signals: [Int32]) throws {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        descriptor = FileDescriptor(owning: try syscall("signalfd") {
            signalfd(-1, &set, Int32(SFD_NONBLOCK) | Int32(SFD_CLOEXEC))
        })
    }

    var pollDescriptors: [Int32] { [descriptor.rawValue] }
    func timeout(now: Double) -> Double? { nil }

    func service(now: Double) {
        let fd = descriptor.rawValue
        let size = MemoryLayout<signalfd_siginfo>.size
        var info = signalfd_siginfo()
        while case .done(size)? = try? nonBlockingSyscall("read(signalfd)", { Glibc.read(fd, &info, size) }) {
            onSignal(Int32(info.ssi_signo))
        }
    }
}
