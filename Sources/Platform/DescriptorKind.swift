import Glibc

/// What a descriptor someone else handed us really is. A front-end may send
/// anything over SCM_RIGHTS; Ferry looks before it reads, writes or maps.
public enum DescriptorKind: Equatable, Sendable, CustomStringConvertible {
    case eventfd
    /// A regular file: on tmpfs (memfd), hugetlbfs or any other file system.
    case regularFile
    case pipe
    case socket
    case characterDevice
    case blockDevice
    case directory
    /// Another anonymous-inode object (signalfd, timerfd, epoll ...), by its kernel name.
    case anonymous(String)
    case unknown

    /// Reads the type from `fstat`, and for the kernel's anonymous inodes (which
    /// have no file type bits) from the link name in /proc/self/fd, where an
    /// eventfd is "anon_inode:[eventfd]" (fs/eventfd.c, anon_inode_getfile).
    public static func of(_ fd: Int32) throws(SystemError) -> DescriptorKind {
        var st = stat()
        _ = try syscall("fstat") { fstat(fd, &st) }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return .regularFile
        case S_IFIFO: return .pipe
        case S_IFSOCK: return .socket
        case S_IFCHR: return .characterDevice
        case S_IFBLK: return .blockDevice
        case S_IFDIR: return .directory
        default: break
        }
        var link = [CChar](repeating: 0, count: 64)
        let length = try syscall("readlink(/proc/self/fd/\(fd))") {
            readlink("/proc/self/fd/\(fd)", &link, link.count - 1)
        }
        let name = String(decoding: link[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let prefix = "anon_inode:"
        guard name.hasPrefix(prefix) else { return .unknown }
        let object = String(name.dropFirst(prefix.count))
        return object == "[eventfd]" ? .eventfd : .anonymous(object)
    }

    public var description: String {
        switch self {
        case .eventfd: "an eventfd"
        case .regularFile: "a regular file"
        case .pipe: "a pipe"
        case .socket: "a socket"
        case .characterDevice: "a character device"
        case .blockDevice: "a block device"
        case .directory: "a directory"
        case .anonymous(let name): "an anonymous \(name) descriptor"
        case .unknown: "a descriptor of unknown type"
        }
    }
}
