import Model

/// The control socket (`control:` in the file, `--control` on the command line).
public struct ControlSocketSettings: Equatable, Sendable {
    /// nil: `--control`, else $FERRY_CONTROL, else /run/ferry/ferry.sock.
    public var path: String?
    /// Owner, group and mode for the socket file (`--control-owner/-group/-mode` override them).
    public var access = SocketPermissions()

    public init() {}
}
