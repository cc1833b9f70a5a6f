import Ports

/// The control socket (`control:` in the file, `--control` on the command line).
public struct ControlSocketSettings: Equatable, Sendable {
    /// nil: `--control`, else $FERRY_CONTROL, else /run/ferry/ferry.sock.
    public var path: String?
    /// Owner, group and mode for the socket file. Parsed and carried here for the code
    /// that binds the socket; `ferry run` warns while it cannot apply them yet.
    public var access = SocketAccess()

    public init() {}
}
