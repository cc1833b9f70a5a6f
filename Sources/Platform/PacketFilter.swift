import CFerry
import Glibc

/// A classic BPF program (Documentation/networking/filter.rst) a packet
/// socket runs on each frame before it takes it: 0 drops the frame, anything
/// else keeps that many bytes of it. On a SOCK_RAW packet socket the program
/// sees the frame from its Ethernet header on.
public struct PacketFilter: @unchecked Sendable, Equatable {
    public let instructions: [sock_filter]

    public init(_ instructions: [sock_filter]) {
        precondition(!instructions.isEmpty && instructions.count <= Int(UInt16.max), "a filter of \(instructions.count) instructions")
        self.instructions = instructions
    }

    /// Frames to a group address (the I/G bit, the lowest bit of the
    /// destination's first byte: broadcast and multicast) or to another host
    /// (skb pkttype PACKET_OTHERHOST, the ancillary load at SKF_AD_OFF +
    /// SKF_AD_PKTTYPE): what a host's XDP program passes to the kernel but
    /// guests may want, while frames for the host itself stay the host's.
    public static let groupOrOtherHost = PacketFilter([
        // A = the destination's first byte.
        sock_filter(code: FERRY_BPF_LD_B_ABS, jt: 0, jf: 0, k: 0),
        // A & 1: a group address, keep it.
        sock_filter(code: FERRY_BPF_JMP_JSET_K, jt: 2, jf: 0, k: 1),
        // A = the frame's packet type as the kernel classified it.
        sock_filter(code: FERRY_BPF_LD_B_ABS, jt: 0, jf: 0, k: FERRY_SKF_AD_PKTTYPE),
        sock_filter(code: FERRY_BPF_JMP_JEQ_K, jt: 0, jf: 1, k: UInt32(PACKET_OTHERHOST)),
        // Keep: all of it.
        sock_filter(code: FERRY_BPF_RET_K, jt: 0, jf: 0, k: UInt32.max),
        // Drop.
        sock_filter(code: FERRY_BPF_RET_K, jt: 0, jf: 0, k: 0),
    ])

    /// SO_ATTACH_FILTER; the kernel checks and copies the program.
    func attach(to fd: Int32, _ name: String) throws(SystemError) {
        var copy = instructions
        _ = try copy.withUnsafeMutableBufferPointer { buffer throws(SystemError) in
            var program = sock_fprog(len: UInt16(buffer.count), filter: buffer.baseAddress)
            return try syscall("\(name): SO_ATTACH_FILTER (\(buffer.count) instructions)") {
                setsockopt(fd, SOL_SOCKET, FERRY_SO_ATTACH_FILTER, &program, socklen_t(MemoryLayout<sock_fprog>.size))
            }
        }
    }

    public static func == (a: PacketFilter, b: PacketFilter) -> Bool {
        a.instructions.count == b.instructions.count && zip(a.instructions, b.instructions).allSatisfy {
            $0.code == $1.code && $0.jt == $1.jt && $0.jf == $1.jf && $0.k == $1.k
        }
    }
}
