import CFerry
import Glibc
import Platform
import Ports
import Virtio

/// Adaptive idle: a worker busy-polls while frames flow, and after a spell of
/// empty loops asks its guests to kick again and sleeps until one does.
///
/// The order makes the sleep race-free (virtio 1.2 §2.7.10): first every ring
/// asks for kicks and re-checks its avail index behind a full fence; a chain
/// that arrived in between cancels the sleep. A driver that adds a chain after
/// that check sees the request, because it orders its own index store before
/// reading ours, and kicks; the eventfd is then readable and `poll` returns.
/// A TAP's descriptor needs no such dance: it is readable while a frame waits;
/// nor does a packet port's: it is readable while the kernel has handed over a
/// block of its receive ring that we have not walked to the end.
extension Worker {
    /// About a few hundred microseconds of empty loops before sleeping.
    static let idleLoopsBeforeSleep = 4096

    func sleepUntilKicked() {
        sleepQueues.removeAll(keepingCapacity: true)
        sleepDescriptors.removeAll(keepingCapacity: true)
        sleepPacketQueues.removeAll(keepingCapacity: true)
        // Packet ports first, so their descriptors lead the poll set in `sleepPacketQueues` order.
        for source in sources {
            let port: PacketPort
            let queue: Int
            switch source.port {
            case .packet(let p): (port, queue) = (p, source.queue)
            // An xdp port's copy socket is pulled with its queue 0.
            case .xdp(let x) where source.queue == 0: (port, queue) = (x.copies, 0)
            default: continue
            }
            sleepPacketQueues.append((port, queue))
            sleepDescriptors.append(pollfd(fd: port.descriptor(queue: queue), events: Int16(POLLIN), revents: 0))
        }
        for source in sources {
            switch source.port {
            case .vhost(let port):
                let q = port.device.queues[2 &* source.queue &+ 1]
                guard q.isRunning else { continue }
                // A ring we cannot be woken for must be polled.
                guard q.kickFD >= 0 else { return }
                sleepQueues.append(q)
            case .tap(let tap):
                // Readable while the kernel holds a frame: nothing to re-arm, no race.
                sleepDescriptors.append(pollfd(fd: tap.descriptor(queue: source.queue), events: Int16(POLLIN), revents: 0))
            case .xdp(let xdp):
                // Readable while the socket's RX ring holds a frame.
                sleepDescriptors.append(pollfd(fd: xdp.descriptor(queue: source.queue), events: Int16(POLLIN), revents: 0))
            case .gen(let gen):
                // A generator always has the next frame.
                if !gen.isFinished { return }
            case .sink, .failed, .packet:
                continue
            }
        }
        var pending = false
        for q in sleepQueues where q.enableNotifications() { pending = true }
        if !pending && !pauseRequested.load(ordering: .sequentiallyConsistent) {
            // Frame descriptors first (never read here: a read would take a frame), then eventfds.
            let frameDescriptors = sleepDescriptors.count
            for q in sleepQueues { sleepDescriptors.append(pollfd(fd: q.kickFD, events: Int16(POLLIN), revents: 0)) }
            sleepDescriptors.append(pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0))
            sleeps.add(1, ordering: .relaxed)
            let fellAsleep = MonotonicClock.nanoseconds()
            _ = sleepDescriptors.withUnsafeMutableBufferPointer {
                poll($0.baseAddress, nfds_t($0.count), sleepTimeoutMilliseconds)
            }
            asleepNanoseconds.add(MonotonicClock.nanoseconds() &- fellAsleep, ordering: .relaxed)
            for d in sleepDescriptors[frameDescriptors...] where d.revents != 0 { _ = EventFD.drain(d.fd) }
            // An interface that went down or away leaves an error on its sockets,
            // and poll reports it until it is taken: take it, or every sleep ends at once.
            var p = 0
            while p < sleepPacketQueues.count {
                if sleepDescriptors[p].revents & Int16(POLLERR) != 0 {
                    sleepPacketQueues[p].port.takeSocketError(queue: sleepPacketQueues[p].queue)
                }
                p += 1
            }
            // Whatever woke us, look everywhere at once rather than after a skip.
            resetSkips()
        }
        for q in sleepQueues { q.disableNotifications() }
    }
}
