import Packets
import Platform
import Synchronization

/// The part of an xdp port that receives what its steering program leaves to
/// the kernel but Ferry needs too: group frames (the host needs them as well,
/// and a redirect gives a frame to one consumer only) and frames for stations
/// the program does not steer yet (docs/UPLINK.md). A receive-only AF_PACKET
/// socket on the same interface, filtered in the kernel to those frames,
/// pulled with the port's queue 0. It also keeps the interface promiscuous
/// while the port is open, so frames for other stations reach the program.
public final class XdpCopySocket {
    /// Group and unknown-unicast rates are low: 1 MiB is plenty.
    static let ring = PacketRingSocket.ReceiveRing(blockSize: 1 << 17, blockCount: 8, frameSizeLimit: 1 << 14,
                                                   retireTimeoutMilliseconds: 1)

    @usableFromInline let socket: PacketRingSocket
    /// What it received, reported as one more queue of the port.
    public let counters = QueueCounters()
    let lastErrorCode = Atomic<Int32>(0)

    init(interface: String) throws {
        socket = try PacketRingSocket(interface: interface, options: PacketRingSocket.Options(
            receiveRing: Self.ring, transmitRing: nil, promiscuous: true, ignoreOutgoing: true,
            filter: .groupOrOtherHost))
    }

    /// Readable (POLLIN) when the kernel handed a block over; POLLERR when the
    /// interface went down or away (`takeSocketError`).
    public var descriptor: Int32 { socket.fd }

    /// The errno of the socket's last error (0 if none).
    public var lastError: Int32 { lastErrorCode.load(ordering: .relaxed) }

    @inlinable
    public func pull(into batch: PacketBatch) -> Int { socket.pull(into: batch, counters: counters) }

    @inlinable
    public func release() { socket.returnConsumedBlocks() }

    /// After `poll` reported POLLERR on `descriptor`.
    public func takeSocketError() {
        let error = socket.takeSocketError(counters: counters)
        if error != 0 { lastErrorCode.store(error, ordering: .relaxed) }
    }
}
