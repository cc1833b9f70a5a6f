import CFerry
import Glibc
import Platform
import Virtio

/// What a sleeping worker waits on, gathered from the ports of the queues it
/// polls (`Port.addWakeSources`). The worker keeps one and refills it before
/// each sleep; its capacity is reserved once, so sleeping allocates nothing.
///
/// Two kinds of source. A descriptor readable while a frame waits (a TAP's,
/// an AF_XDP or AF_PACKET socket's) needs nothing armed and cannot race. A
/// virtqueue must first ask its driver to kick and check its ring again
/// behind a full fence (virtio 1.2 §2.7.10, §2.8): a chain that slipped in
/// cancels the sleep; a driver that adds one after the check sees the request,
/// because it orders its own index store before reading ours, and kicks, so
/// the kick eventfd is readable and `poll` returns.
public struct WakeSources {
    /// Whom to hand an error that `poll` reports on a frame descriptor: an
    /// interface that went down leaves one on its AF_PACKET sockets, reported
    /// until taken, which would end every sleep at once.
    enum ErrorOwner {
        case none
        case packet(PacketPort, queue: Int)
        case copies(XdpCopySocket)
    }

    /// Frame descriptors, then (once armed) kick eventfds and the wake eventfd.
    private var descriptors: [pollfd] = []
    /// Per frame descriptor, in order.
    private var owners: [ErrorOwner] = []
    /// Per frame descriptor, in order: a TAP's (the kernel ran the sender program for its frames).
    private var isTap: [Bool] = []
    private var rings: [Virtqueue] = []
    /// The last `wait` ended with a frame on a TAP: `SenderCPUProgram` knows who sent it.
    public private(set) var wokenByTap = false

    public init(capacity: Int) {
        descriptors.reserveCapacity(2 &* capacity &+ 1)
        owners.reserveCapacity(capacity)
        isTap.reserveCapacity(capacity)
        rings.reserveCapacity(capacity)
    }

    /// Makes room for the sources of `queues` receive queues (a queue adds at
    /// most two descriptors, or a ring), so filling it never allocates.
    public mutating func reserve(_ queues: Int) {
        descriptors.reserveCapacity(4 &* queues &+ 1)
        owners.reserveCapacity(2 &* queues)
        isTap.reserveCapacity(2 &* queues)
        rings.reserveCapacity(queues)
    }

    /// Forgets every source (and lets go of the ports they came from).
    public mutating func removeAll() {
        descriptors.removeAll(keepingCapacity: true)
        owners.removeAll(keepingCapacity: true)
        isTap.removeAll(keepingCapacity: true)
        rings.removeAll(keepingCapacity: true)
    }

    mutating func add(descriptor: Int32, errors owner: ErrorOwner = .none, tap: Bool = false) {
        // Frame descriptors lead the poll list, before anything `arm` appends.
        descriptors.append(pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0))
        owners.append(owner)
        isTap.append(tap)
    }

    mutating func add(ring: Virtqueue) { rings.append(ring) }

    /// Asks every ring to kick. False when a chain arrived meanwhile: the
    /// caller must not sleep (and `disarm`s). Otherwise the poll list gets the
    /// kick eventfds and `wakeDescriptor`.
    public mutating func arm(wakeDescriptor: Int32) -> Bool {
        var pending = false
        for q in rings where q.enableNotifications() { pending = true }
        if pending { return false }
        for q in rings { descriptors.append(pollfd(fd: q.kickFD, events: Int16(POLLIN), revents: 0)) }
        descriptors.append(pollfd(fd: wakeDescriptor, events: Int16(POLLIN), revents: 0))
        return true
    }

    /// Sleeps until a source is readable or `timeoutMilliseconds` pass, then
    /// drains the eventfds that woke it (frame descriptors are never read
    /// here: a read would take a frame) and hands reported errors to their ports.
    /// False when the timeout passed with nothing to report.
    public mutating func wait(timeoutMilliseconds: Int32) -> Bool {
        wokenByTap = false
        return handle(ready: poll(&descriptors, nfds_t(descriptors.count), timeoutMilliseconds))
    }

    /// `wait(timeoutMilliseconds:)` for a timeout below a millisecond (`ppoll`).
    public mutating func wait(timeoutNanoseconds nanoseconds: Int) -> Bool {
        wokenByTap = false
        return handle(ready: ferry_ppoll_nanoseconds(&descriptors, UInt(descriptors.count), nanoseconds))
    }

    private mutating func handle(ready: Int32) -> Bool {
        if ready == 0 { return false }
        let frameDescriptors = owners.count
        for d in descriptors[frameDescriptors...] where d.revents != 0 { _ = EventFD.drain(d.fd) }
        var i = 0
        while i < frameDescriptors {
            if isTap[i] && descriptors[i].revents & Int16(POLLIN) != 0 { wokenByTap = true }
            if descriptors[i].revents & Int16(POLLERR) != 0 {
                switch owners[i] {
                case .none: break
                case .packet(let port, let queue): port.takeSocketError(queue: queue)
                case .copies(let copies): copies.takeSocketError()
                }
            }
            i &+= 1
        }
        return true
    }

    /// Tells the drivers not to kick while the worker polls again.
    public func disarm() {
        for q in rings { q.disableNotifications() }
    }
}

extension Port {
    /// A queue of this port can never be waited for, whatever its state
    /// (`addWakeSources` would say false every time): a worker polling it
    /// does not gather wake sources at all. A generator is not one of
    /// these: it can be slept on once it has sent its count.
    public var isAlwaysPolled: Bool {
        if case .virtioUser = self { return true }
        return false
    }

    /// Adds to `sources` what tells a sleeping worker that `queue` has frames.
    /// False when the queue cannot be waited for: a generator always has the
    /// next frame, and a ring without a kick descriptor must be polled.
    public func addWakeSources(queue: Int, to sources: inout WakeSources) -> Bool {
        switch self {
        case .vhost(let p):
            let ring = p.device.transmitQueue(queue)
            guard ring.isRunning else { return true }
            guard ring.kickFD >= 0 else { return false }
            sources.add(ring: ring)
        case .tap(let p):
            // Readable while the kernel holds a frame.
            sources.add(descriptor: p.descriptor(queue: queue), tap: true)
        case .xdp(let p):
            // Readable while the socket's RX ring holds a frame.
            sources.add(descriptor: p.descriptor(queue: queue))
            if queue == 0 { sources.add(descriptor: p.copies.descriptor, errors: .copies(p.copies)) }
        case .packet(let p):
            // Readable while the kernel has handed over a block we have not walked to the end.
            sources.add(descriptor: p.descriptor(queue: queue), errors: .packet(p, queue: queue))
        case .vxlan(let p):
            // Readable while a datagram waits on the underlay socket.
            sources.add(descriptor: p.descriptor)
        case .gen(let p):
            return p.isFinished
        case .virtioUser:
            // Polled: it asks its back-end never to interrupt.
            return false
        case .sink, .failed:
            break
        }
        return true
    }
}
