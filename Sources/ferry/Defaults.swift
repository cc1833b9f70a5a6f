import Glibc

/// Where Ferry puts its sockets unless told otherwise.
enum Defaults {
    static let runDirectory = "/run/ferry"
    static var controlSocket: String {
        if let env = getenv("FERRY_CONTROL") { return String(cString: env) }
        return runDirectory + "/ferry.sock"
    }
    /// The embedded default: two guests' sockets, cross-connected.
    static let embeddedPorts = ["vhost:\(runDirectory)/vm0.sock,name=vm0", "vhost:\(runDirectory)/vm1.sock,name=vm1"]
}
