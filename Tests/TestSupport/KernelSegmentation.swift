import Foundation
import Glibc
import Packets
import Platform

/// The kernel as an independent reference for software segmentation: a GSO
/// frame written into TAP `in` crosses a Linux bridge (in a namespace of the
/// test's own) to TAP `out`, whose reader did not take TSO/USO, so the kernel
/// segments it (skb_gso_segment) and `out` hands over the segments. With
/// `checksumOffload` the reader of `out` takes partial checksums (TUN_F_CSUM)
/// and the segments come with NEEDS_CSUM; without, every checksum is computed.
public final class KernelSegmentation {
    public let namespace: NetworkSandbox.Namespace
    private let input: TapDevice
    private let output: TapDevice

    public init(checksumOffload: Bool) throws {
        try NetworkSandbox.requireTapSupport()
        let namespace = try NetworkSandbox.Namespace("ferry-seg-\(getpid())-\(checksumOffload ? 1 : 0)")
        // deinit does not run for an init that throws: the namespace goes here or it outlives the test.
        do {
            // No IPv6 on the new links: no router solicitations or MLD reports among the segments.
            try namespace.enter {
                try "1".write(toFile: "/proc/sys/net/ipv6/conf/default/disable_ipv6", atomically: false, encoding: .utf8)
            }
            try namespace.ip("link", "add", "br0", "type", "bridge", "stp_state", "0")
            (input, output) = try namespace.enter { () throws -> (TapDevice, TapDevice) in
                (try TapDevice(name: "segin", offloads: []),
                 try TapDevice(name: "segout", offloads: checksumOffload ? [.checksum] : []))
            }
            try namespace.ip("link", "set", "segin", "master", "br0")
            try namespace.ip("link", "set", "segout", "master", "br0")
            try namespace.ip("link", "set", "br0", "up")
        } catch {
            namespace.delete()
            throw error
        }
        self.namespace = namespace
    }

    deinit {
        input.close()
        output.close()
        namespace.delete()
    }

    /// The segments the kernel makes of `frame`: each its virtio-net header and bytes.
    public func segments(of frame: GSOTestFrame, expecting count: Int) throws -> [(VirtioNetHeader, [UInt8])] {
        let written = frame.tapWrite
        let result = written.withUnsafeBytes { Glibc.write(input.queueDescriptors[0], $0.baseAddress!, $0.count) }
        guard result == written.count else {
            throw NetworkSandbox.Unavailable("write to the input TAP: \(result) (\(String(cString: strerror(errno))))")
        }
        var segments: [(VirtioNetHeader, [UInt8])] = []
        var buffer = [UInt8](repeating: 0, count: 70_000)
        let fd = output.queueDescriptors[0]
        while segments.count < count {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 2000) == 1 else {
                throw NetworkSandbox.Unavailable("the kernel passed \(segments.count) of \(count) segments in 2 s")
            }
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            // Only the test's own frames (the kernel may send IGMP reports of its own on the new links).
            guard n >= 12 + 14, Array(buffer[18..<24]) == Array(frame.bytes[6..<12]) else { continue }
            let header = buffer.withUnsafeBytes { VirtioNetHeader(loading: $0.baseAddress!) }
            segments.append((header, Array(buffer[12..<n])))
        }
        return segments
    }
}
