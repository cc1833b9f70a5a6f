import Glibc
import Platform

/// The terminal `ferry ctl top` draws on: keys arrive one at a time, unechoed, and Ctrl-C
/// arrives as a key rather than a signal, so quitting always goes through `restore()` and
/// never leaves the shell without echo. Nil when stdin or stdout is not a terminal.
final class RawTerminal {
    private var saved = termios()

    init?() {
        guard isatty(STDIN_FILENO) == 1, isatty(STDOUT_FILENO) == 1, tcgetattr(STDIN_FILENO, &saved) == 0 else {
            return nil
        }
        var raw = saved
        raw.c_lflag &= ~tcflag_t(ICANON | ECHO | ISIG)
        guard tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0 else { return nil }
    }

    func restore() { _ = tcsetattr(STDIN_FILENO, TCSANOW, &saved) }

    /// Waits up to `seconds`; true as soon as q, Q or Ctrl-C is pressed.
    func waitForQuit(seconds: Double) -> Bool {
        let deadline = MonotonicClock.now() + seconds
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let left = deadline - MonotonicClock.now()
            if left <= 0 { return false }
            var fd = pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)
            guard poll(&fd, 1, Int32(left * 1000) + 1) > 0 else { continue }
            let n = DescriptorIO.read(STDIN_FILENO, into: &buffer)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                // The terminal went away: nothing more to read, just wait out the second.
                usleep(useconds_t(left * 1_000_000))
                return false
            }
            if buffer[0..<n].contains(where: { $0 == UInt8(ascii: "q") || $0 == UInt8(ascii: "Q") || $0 == 3 }) {
                return true
            }
        }
    }
}
