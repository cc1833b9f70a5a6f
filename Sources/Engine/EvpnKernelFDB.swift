import Logging
import Model
import Packets
import Platform
import Ports
import Switching

/// EVPN for one vxlan port, with FRR's zebra as the BGP EVPN speaker and the
/// kernel's bridge forwarding database as the meeting point, the way
/// switchdev hardware meets FRR (docs/MULTIHOST.md, "EVPN through FRR"):
///
/// * Ferry's local addresses (learned on any port but a tunnel, in the port's
///   VLAN) are written as static entries on the kernel bridge port `evpn_port`;
///   zebra sees them as local MACs and advertises type-2 routes.
/// * What zebra installs on the kernel vxlan device (`evpn=`) comes back as
///   neighbour changes: a MAC with a VTEP becomes a static entry on the vxlan
///   port behind that VTEP (never aged, never moved by the port's own
///   traffic, since the port does not learn; yielding only to the address
///   showing up on a local port, a move); the all-zero MAC with a VTEP (a
///   type-3 route) puts that VTEP in the port's flood list.
///
/// Every message is input: one that is malformed, names a VTEP of the other
/// family, a VNI other than the port's or a group address is refused, logged
/// and counted (`EvpnCounters`). A lost change (the socket overran) or a
/// port set rebuilt starts a full resynchronisation from a dump. Control
/// thread only: it writes the forwarding database as its one writer does.
final class EvpnKernelFDB: ControlLoopClient {
    let name: String
    let index: PortIndex
    let vlan: UInt16
    let port: VxlanPort
    let kernel: KernelBridgeFDB
    let database: ForwardingDatabase
    let changes: FDBChangeLog
    let logger: Logger
    /// The local MACs written to the kernel bridge port.
    private var mirrored: Set<UInt64> = []
    private var nextSync = 0.0
    private var synced = false
    static let retryInterval = 1.0
    /// Refusals logged one by one before only the counter tells.
    static let loggedRefusals: UInt64 = 20

    init(name: String, index: PortIndex, vlan: UInt16, port: VxlanPort, kernel: KernelBridgeFDB,
         database: ForwardingDatabase, logger: Logger) {
        self.name = name
        self.index = index
        self.vlan = vlan
        self.port = port
        self.kernel = kernel
        self.database = database
        self.logger = logger
        changes = database.subscribeToChanges()
    }

    /// Stops following the database (the port set is being rebuilt, or the port went).
    func close() { database.unsubscribe(changes) }

    var pollDescriptors: [Int32] { [kernel.descriptor] }

    func timeout(now: Double) -> Double? {
        if !synced { return max(0, nextSync - now) }
        return changes.isEmpty ? nil : 0
    }

    func service(now: Double) {
        let (entries, overrun) = kernel.receiveChanges()
        if overrun {
            kernel.counters.overruns += 1
            logger.warning("port \(name): EVPN: changes from the kernel were lost (socket overrun); reading the table again")
            synced = false
        }
        if synced {
            for entry in entries { take(entry) }
        }
        if !synced && now >= nextSync {
            synchronise()
            if !synced { nextSync = now + Self.retryInterval }
        }
        if synced {
            for change in changes.take() { mirror(change) }
        }
    }

    // MARK: From zebra

    private func take(_ result: Result<BridgeNeighbour?, NetlinkInputError>) {
        switch result {
        case .failure(let error):
            refuse("a malformed message: \(error)")
        case .success(nil):
            break
        case .success(let entry?):
            // The bridge's copy (NTF_MASTER) carries no VTEP; the vxlan device's own has it.
            guard entry.interfaceIndex == kernel.vxlanIndex, entry.isDeviceOwn else { return }
            apply(entry)
        }
    }

    private func apply(_ entry: BridgeNeighbour) {
        let mac = macText(entry.mac)
        guard let vtep = entry.destination else { return refuse("\(mac) on \(kernel.devices.vxlanDevice) without a VTEP") }
        guard vtep.isIPv6 == port.local.isIPv6, vtep != port.local else {
            return refuse("\(mac) behind VTEP \(vtep), which cannot be one for local \(port.local)")
        }
        if let vni = entry.vni, vni != port.vni { return refuse("\(mac) for VNI \(vni), not \(port.vni)") }
        if entry.vlan.map({ $0 != 0 }) == true { return refuse("\(mac) in bridge VLAN \(entry.vlan!): the bridge carries one") }
        if entry.isFloodEntry {
            let number = entry.change == .added ? endpoint(vtep) : Int(port.endpoints.number(of: vtep))
            guard number != 0 else { return }
            port.endpoints.setFlooding(number, entry.change == .added)
            logger.info("port \(name): EVPN: VTEP \(vtep) \(entry.change == .added ? "joins" : "leaves") the flood list")
            return
        }
        guard entry.mac & Ethernet.groupBit == 0 else { return refuse("group address \(mac) behind VTEP \(vtep)") }
        let key = FDBKey(vlan: vlan, mac: entry.mac)
        switch entry.change {
        case .added:
            let number = endpoint(vtep)
            guard number != 0 else { return }
            if !database.addStatic(key, port: index, endpoint: UInt16(number)) {
                refuse("\(mac) behind VTEP \(vtep): the forwarding database is full")
            }
        case .removed:
            database.removePinnedRemote(key, port: index)
        }
    }

    /// The number of `vtep` in the port's table, added if new; 0 when the table is full.
    private func endpoint(_ vtep: InternetAddress) -> Int {
        let known = port.endpoints.number(of: vtep)
        if known != 0 { return Int(known) }
        let added = port.endpoints.append(vtep)
        if added == 0 { refuse("VTEP \(vtep): the port knows \(port.endpoints.capacity) already") }
        return Int(added)
    }

    private func refuse(_ why: String) {
        kernel.counters.refused += 1
        if kernel.counters.refused <= Self.loggedRefusals {
            logger.warning("port \(name): EVPN: refused from the kernel: \(why)")
        }
    }

    // MARK: To zebra

    /// Follows one database change: an address on a local port in the VLAN is
    /// written to the kernel bridge port, one gone (or now behind a VTEP) taken off.
    private func mirror(_ change: FDBChange) {
        guard change.key.vlan == vlan else { return }
        let mac = change.key.mac
        if let to = change.port, to != index, !isTunnel(to) {
            guard !mirrored.contains(mac) else { return }
            write(mac, local: true)
        } else if mirrored.contains(mac) {
            write(mac, local: false)
        }
    }

    private func isTunnel(_ port: PortIndex) -> Bool {
        // Another vxlan port's addresses live on other hosts too: not this host's to advertise.
        tunnels.contains(port)
    }

    /// Every tunnel port's number, given when the port set is built.
    var tunnels: Set<PortIndex> = []

    private func write(_ mac: UInt64, local: Bool) {
        do {
            if local { try kernel.addLocal(mac: mac) } else { try kernel.removeLocal(mac: mac) }
            if local { mirrored.insert(mac) } else { mirrored.remove(mac) }
        } catch {
            kernel.counters.writeFailures += 1
            if kernel.counters.writeFailures <= Self.loggedRefusals {
                let what = local ? "write" : "remove"
                logger.warning("port \(name): EVPN: could not \(what) \(macText(mac)) on \(kernel.devices.bridgePort): \(error)")
            }
            // Tried again from the next full read of the table.
            synced = false
        }
    }

    /// Makes both sides whole from a dump: zebra's entries into the port and
    /// the database (what is gone from the kernel goes here too), and the
    /// database's local addresses onto the kernel bridge port (stale ones off).
    private func synchronise() {
        let dump: [Result<BridgeNeighbour?, NetlinkInputError>]
        do {
            dump = try kernel.dump()
        } catch {
            logger.warning("port \(name): EVPN: cannot read the kernel's bridge table: \(error)")
            return
        }
        _ = changes.take()
        var remote: Set<UInt64> = []
        var flooded: Set<Int> = []
        var onPort: Set<UInt64> = []
        for result in dump {
            guard case .success(let entry?) = result else {
                take(result)
                continue
            }
            if entry.interfaceIndex == kernel.vxlanIndex && entry.isDeviceOwn {
                apply(entry)
                if let vtep = entry.destination, entry.isFloodEntry {
                    flooded.insert(Int(port.endpoints.number(of: vtep)))
                } else {
                    remote.insert(entry.mac)
                }
            } else if entry.interfaceIndex == kernel.bridgePortIndex && entry.state & RTNetlink.nudNoARP != 0 {
                onPort.insert(entry.mac)
            }
        }
        let count = port.endpoints.count
        if count > 0 {
            for number in 1...count where !flooded.contains(number) { port.endpoints.setFlooding(number, false) }
        }
        var local: Set<UInt64> = []
        for entry in database.entries(now: 0) where entry.key.vlan == vlan {
            if entry.port == index {
                if entry.isPinnedRemote && !remote.contains(entry.key.mac) {
                    database.removePinnedRemote(entry.key, port: index)
                }
            } else if !isTunnel(entry.port) {
                local.insert(entry.key.mac)
            }
        }
        // Changes made while reading are in the database already.
        _ = changes.take()
        synced = true
        mirrored = onPort
        for mac in onPort.subtracting(local) { write(mac, local: false) }
        for mac in local.subtracting(onPort) { write(mac, local: true) }
        let summary = "\(remote.count) remote MACs, \(port.endpoints.floodCount) VTEPs to flood, "
            + "\(mirrored.count) local MACs on \(kernel.devices.bridgePort)"
        logger.info("port \(name): EVPN: in step with the kernel: \(summary)")
    }
}

/// A MAC address held as FDBKey holds it, for log lines.
func macText(_ mac: UInt64) -> MACAddress { FDBKey(vlan: 0, mac: mac).macAddress }
