import Model
import Packets
import Platform
import Ports

// VXLAN datagrams that arrive on an xdp uplink for the vxlan ports sending
// through it (`via=`). The steering program redirects them to the uplink's
// AF_XDP sockets; the uplink's pull sets them apart from the frames it
// switches as its own (`XdpPort.tunnelFrames`); here each vxlan port wired to
// the uplink takes its own (`VxlanPort.decapsulate`, the socket path's
// decoder) by reference into `tunnelInner`, and the burst is switched as that
// port's, on its queue 1 + the uplink queue's number, before the uplink's pull is released. So the uplink
// never knows the vxlan port, and the worker that pulls an uplink queue
// serves its tunnels' datagrams without handing them to another thread.
extension Worker {
    @inlinable
    func receiveTunnelFrames(_ frames: PacketBatch, uplink source: WorkerSource, now: inout UInt64) {
        var claimed = 0
        let tunnelPorts = ports[Int(source.index)].tunnelPorts
        var k = 0
        // Indexed: a for-in over the list allocated 40 bytes per burst in a debug build (AllocationTests).
        while k < tunnelPorts.count {
            let v = tunnelPorts[k]
            k &+= 1
            let destination = ports[v].port
            guard let tunnel = destination.tunnel else { continue }
            let inner = tunnelInner
            inner.reset()
            claimed &+= tunnel.decapsulate(underlay: frames, queue: source.queue, into: inner)
            if inner.count == 0 { continue }
            let index = PortIndex(truncating: v)
            if capturesReceive(v) { capture(inner, port: index, direction: .receive) }
            if now == 0 { now = MonotonicClock.seconds() }
            // The burst before came in elsewhere: its remembered decision is not this one's.
            recent.valid = false
            switchBurst(inner, from: WorkerSource(index: index, port: destination, queue: 1 &+ source.queue), now: now)
        }
        // Redirected for a tunnel no port here takes any more (removed while the program had it).
        if claimed < frames.count { source.port.counters(queue: source.queue).dropped(.noDestination, frames.count &- claimed) }
    }
}
