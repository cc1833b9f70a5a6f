import ArgumentParser

/// Ferry's exit statuses (docs/OPERATIONS.md, "Exit status"): sysexits(3) numbers
/// where one fits, so that a supervisor or a script can tell a config that will never
/// start from a port that may open next time. 64 (EX_USAGE, a command line that does not
/// parse, followed by the usage text) is ArgumentParser's.
enum ExitStatus {
    /// The config (the file, or the options given with it) is refused: what `ferry check`
    /// reports, and what a restart cannot cure. `ferry ctl`: Ferry answered with an error.
    static let configRefused = ExitCode(1)
    /// A port, the control socket or the metrics address could not be opened, or
    /// `ferry ctl` could not reach Ferry (EX_UNAVAILABLE).
    static let unavailable = ExitCode(69)
    /// The system refused Ferry something of its own, such as a signalfd (EX_OSERR).
    static let systemError = ExitCode(71)
    /// A directory for the sockets could not be created (EX_CANTCREAT).
    static let cannotCreate = ExitCode(73)
}

/// A failure after the command line parsed: said once (by the logger, so that the journal
/// sees its priority) and then the status, never the usage text that ArgumentParser
/// adds to a `ValidationError`.
struct RunFailure: Error {
    let message: String
    let status: ExitCode

    init(_ message: String, _ status: ExitCode) {
        self.message = message
        self.status = status
    }
}
