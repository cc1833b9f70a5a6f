import Foundation
import Glibc
import Packets

/// Waits until `descriptor` is readable or `timeout` seconds passed (a port's receive
/// queue; a timeout is the caller's to notice: it finds nothing to pull).
public func waitReadable(_ descriptor: Int32, timeout: Double) throws {
    var pfd = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
    guard poll(&pfd, 1, Int32(max(0, timeout) * 1000)) >= 0 else {
        throw NetworkSandbox.Unavailable("poll: \(String(cString: strerror(errno)))")
    }
}

/// The frames of a port's receive queues, each queue's in the order pulled: pulls from
/// every queue that polls readable until `expecting` frames came or `timeout` seconds
/// passed. The port is reached through closures so any kind of port (TAP, packet) fits.
public func pullFromQueues(_ queues: Int, expecting: Int, timeout: Double, into batch: PacketBatch,
                           descriptor: (Int) -> Int32, pull: (Int, PacketBatch) -> Int,
                           release: (Int) -> Void) -> [[[UInt8]]] {
    var perQueue = [[[UInt8]]](repeating: [], count: queues)
    let deadline = Date().addingTimeInterval(timeout)
    while perQueue.reduce(0, { $0 + $1.count }) < expecting, Date() < deadline {
        var pfds = (0..<queues).map { pollfd(fd: descriptor($0), events: Int16(POLLIN), revents: 0) }
        _ = poll(&pfds, nfds_t(queues), 100)
        for q in 0..<queues {
            batch.reset()
            _ = pull(q, batch)
            perQueue[q] += (0..<batch.count).map { bytes(of: batch, frame: $0) }
            release(q)
        }
    }
    return perQueue
}
