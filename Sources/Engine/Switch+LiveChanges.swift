import Model
import Ports
import Switching

// Ports added and removed while frames flow (`ferry ctl port add/del`).
//
// Both run on the control thread, the one that runs `ControlLoop` and is the
// forwarding database's only writer. The new port set's worker tables and
// VLAN membership are built there and swapped in while every worker is
// parked between bursts (`adopt`), the pause a vhost device change takes: a
// worker never sees a half-built table, and its bursts take no lock and
// allocate nothing because of it. Frames of the other ports wait in their
// rings for the microseconds of the pause; none is lost.
//
// A port's number is its identity in the forwarding database and in every
// `PortSet`, so it never changes while the port lives. A removed port's
// number is free again only once no entry names it: the learning queues are
// drained and every entry on the port, learned or static, is flushed before
// `removePort` returns. `addPort` takes the lowest free number.
extension Switch {
    /// Opens the port `spec` describes and lets frames flow to and from it.
    /// Its name is `spec.name`, or `p` and its number. Refused, with the switch
    /// unchanged, for a name or a socket path or interface another port has, a
    /// full switch, or a port that cannot be opened: an uplink that fails to
    /// open is an error here, not a `FailedPort` as at startup.
    @discardableResult
    public func addPort(_ spec: PortSpec) throws(SwitchError) -> NamedPort {
        let taken = PortSet(ports.map(\.index))
        guard let index = (0..<PortSet.maxPorts).lazy.map(PortIndex.init(truncating:)).first(where: { !taken.contains($0) })
        else { throw .full }
        let name = spec.name ?? "p\(index)"
        guard port(named: name) == nil else { throw .nameInUse(name) }
        if let claim = spec.kind.claim, let holder = ports.first(where: { $0.spec.kind.claim == claim }) {
            // A second listener on a path would take the first one's socket; a
            // second TAP of the same name would join it as another queue.
            throw .port(spec.text, "\(claim) is already port '\(holder.name)'")
        }
        let added = try open(spec, name: name, index: index, failedUplinkKept: false)
        var newPorts = ports
        newPorts.insert(added, at: newPorts.firstIndex { $0.index > index } ?? newPorts.endIndex)
        do throws(SwitchError) {
            try checkQueues(newPorts)
        } catch {
            added.port.shutDown(why: "port refused")
            throw error
        }
        adopt(newPorts)
        for client in added.controlClients { control.add(client) }
        logger.info("port \(name) added as number \(index): \(spec.text)")
        return added
    }

    /// Stops frames to and from the port named `name`, forgets every
    /// forwarding entry on it (learned and static), and lets go of it: a vhost
    /// port's front-end is dropped and its socket removed, a TAP Ferry created
    /// is deleted, an xdp uplink's program detached, packet sockets closed.
    public func removePort(named name: String) throws(SwitchError) {
        guard let gone = port(named: name) else { throw .unknownPort(name) }
        adopt(ports.filter { $0 !== gone })
        // No worker polls the port now, so none can queue an address for it any
        // more; one queued before the pause is learned here and then flushed
        // with the rest, so the next port given this number inherits nothing.
        learning.learn()
        let forgotten = database.flush(port: gone.index, includingStatic: true)
        for client in gone.controlClients { control.remove(client) }
        gone.port.shutDown(why: "port removed")
        logger.info("port \(name) (number \(gone.index)) removed, \(forgotten) forwarding entries forgotten")
    }
}
