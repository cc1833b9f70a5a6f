import CFerry
import Glibc

/// Facts about an existing network interface that a port needs before it
/// opens anything on it: its index, MTU and receive queues.
public enum NetworkInterface {
    /// The interface's index, or an error naming it when there is no such interface.
    public static func index(of name: String) throws(SystemError) -> UInt32 {
        let index = if_nametoindex(name)
        guard index != 0 else { throw SystemError("no interface named '\(name)'", errno: ENODEV) }
        return index
    }

    /// The interface's MTU (SIOCGIFMTU).
    public static func mtu(of name: String) throws(SystemError) -> Int {
        let control = FileDescriptor(owning: try syscall("socket(AF_INET, SOCK_DGRAM)") {
            socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        })
        var request = ifreq()
        let bytes = Array(name.utf8)
        guard bytes.count < Int(IFNAMSIZ) else { throw SystemError("interface name too long: \(name)", errno: ENAMETOOLONG) }
        withUnsafeMutableBytes(of: &request.ifr_ifrn.ifrn_name) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let fd = control.rawValue
        _ = try syscall("SIOCGIFMTU(\(name))") { ferry_ioctl_pointer(fd, UInt(SIOCGIFMTU), &request) }
        return Int(request.ifr_ifru.ifru_mtu)
    }

    /// How many receive queues the kernel shows for the interface
    /// (/sys/class/net/NAME/queues/rx-N); 1 when it cannot tell.
    public static func receiveQueueCount(of name: String) -> Int {
        guard let dir = opendir("/sys/class/net/\(name)/queues") else { return 1 }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if entryName.hasPrefix("rx-") { count += 1 }
        }
        return max(1, count)
    }
}
