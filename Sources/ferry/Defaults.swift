import Glibc

/// Where Ferry puts its sockets unless told otherwise.
enum Defaults {
    static let runDirectory = "/run/ferry"
    static var controlSocket: String {
        if let env = getenv("FERRY_CONTROL") { return String(cString: env) }
        return runDirectory + "/ferry.sock"
    }
    /// The embedded default: one guest's socket and the host's TAP, in VLAN 1,
    /// so a guest attached to vm0 reaches the host (and the host the guest)
    /// through ferry0 — what a Linux bridge with one VM and the host would be.
    static let embeddedTap = "ferry0"
    static let embeddedPorts = ["vhost:\(runDirectory)/vm0.sock,name=vm0", "tap:\(embeddedTap),name=\(embeddedTap)"]
}
