import CFerry
import Glibc
import Model

/// Facts about an existing network interface that a port needs before it
/// opens anything on it: its index, MTU and receive queues.
public enum NetworkInterface {
    /// Refuses a string the kernel cannot take as an interface name (IFNAMSIZ).
    public static func checkName(_ name: String) throws(InvalidArgument) {
        guard !name.isEmpty, name.utf8.count <= TapDevice.maxNameLength, !name.utf8.contains(0) else {
            throw InvalidArgument("'\(name)' is not an interface name (1-\(TapDevice.maxNameLength) bytes)")
        }
    }

    /// The interface's index; an error that says so when there is no such
    /// interface (`SystemError`, ENODEV) or `name` cannot be one (`InvalidArgument`).
    public static func index(of name: String) throws -> UInt32 {
        try checkName(name)
        let index = if_nametoindex(name)
        guard index != 0 else {
            throw SystemError("no such interface '\(name)' (an uplink attaches to an existing one)", errno: ENODEV)
        }
        return index
    }

    /// The interface's MTU (SIOCGIFMTU, which any socket answers).
    public static func mtu(of name: String) throws -> Int {
        _ = try index(of: name)
        let control = FileDescriptor(owning: try syscall("socket(AF_INET, SOCK_DGRAM)") {
            socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        })
        var request = TapDevice.request(name)
        let fd = control.rawValue
        _ = try syscall("SIOCGIFMTU(\(name))") { ferry_ioctl_pointer(fd, UInt(SIOCGIFMTU), &request) }
        return Int(request.ifr_ifru.ifru_mtu)
    }

    /// The interface's MAC address (/sys/class/net/NAME/address).
    public static func hardwareAddress(of name: String) throws -> MACAddress {
        try checkName(name)
        let path = "/sys/class/net/\(name)/address"
        guard let file = fopen(path, "r") else { throw SystemError("open(\(path))", errno: errno) }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 64)
        guard fgets(&line, Int32(line.count), file) != nil else { throw SystemError("read(\(path))", errno: EIO) }
        let text = String(decoding: line.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let mac = MACAddress(text) else { throw SystemError("\(path): '\(text)' is not a MAC address", errno: EINVAL) }
        return mac
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
