import ControlProtocol
import Engine
import Model
import Packets
import Platform
import Ports
import Switching

extension ControlServer {
    /// The reply line to one request, or to why it was refused. Runs on the control thread,
    /// which is also the forwarding database's one writer (LearningService is served by the
    /// same ControlLoop), so `fdb-add` and `fdb-del` write the table directly: no second
    /// writer, no hand-over queue.
    func reply(to incoming: ControlCodec.Incoming) -> [UInt8] {
        do throws(ControlError) {
            switch try incoming.request.get() {
            case .hello(let version):
                let agreed = min(version, ControlProtocol.version)
                return ControlCodec.encodeReply(HelloReply(version: agreed, ferry: FerryVersion.number), id: incoming.id)
            case .stats, .show(.stats):
                return ControlCodec.encodeReply(statistics(now: MonotonicClock.now()), id: incoming.id)
            case .statsClear:
                let ports = sw.ports
                counterMark = CounterMark(StatsReport.reply(sw), ports: ports, time: MonotonicClock.now())
                logger.info("control: counters cleared (stats counts from now; /metrics unchanged)")
                return ControlCodec.encodeReply(OKReply(), id: incoming.id)
            case .show(.ports):
                return ControlCodec.encodeReply(PortsReply(ports: PortsReport.ports(sw)), id: incoming.id)
            case .show(.fdb):
                return ControlCodec.encodeReply(FDBReport.reply(sw, now: MonotonicClock.seconds()), id: incoming.id)
            case .show(.vteps):
                return ControlCodec.encodeReply(VTEPsReply(vteps: VTEPReport.vteps(sw)), id: incoming.id)
            case .fdbAdd(let mac, let port, let vlan):
                try addStatic(mac: mac, portName: port, vlan: vlan)
                return ControlCodec.encodeReply(OKReply(), id: incoming.id)
            case .fdbDel(let mac, let vlan):
                try remove(mac: mac, vlan: vlan)
                return ControlCodec.encodeReply(OKReply(), id: incoming.id)
            case .fdbFlush(let filter):
                return ControlCodec.encodeReply(FDBFlushReply(removed: try flush(filter)), id: incoming.id)
            case .portAdd(let spec):
                return ControlCodec.encodeReply(PortChangeReply(port: try addPort(spec)), id: incoming.id)
            case .portDel(let name):
                return ControlCodec.encodeReply(PortChangeReply(port: try removePort(name)), id: incoming.id)
            case .capture:
                // answerLines hands a capture's connection over before any reply is asked for.
                throw .captureNotAlone
            }
        } catch {
            return ControlCodec.encodeError(error, id: incoming.id)
        }
    }

    /// `fdb-add`: pins a unicast MAC in a VLAN to a port; replaces any entry,
    /// learned or static, for the same MAC and VLAN.
    private func addStatic(mac text: String, portName name: String, vlan given: Int?) throws(ControlError) {
        let mac = try Self.macAddress(text)
        switch mac.staticEntryRefusal {
        case .groupAddress?: throw .groupAddress(mac.description)
        case .nullAddress?: throw .nullAddress(mac.description)
        case nil: break
        }
        guard let port = sw.port(named: name) else { throw .refused(SwitchError.unknownPort(name).description) }
        let vlan: UInt16
        if let given {
            // ControlProtocol.vlanIDs held it, so it fits.
            guard port.vlan.vlans.contains(UInt16(given)) else {
                throw .vlanNotCarried(port: name, vlan: given, mode: port.vlan.description)
            }
            vlan = UInt16(given)
        } else {
            // As the config's `fdb:` entries: the VLAN the port's untagged frames enter.
            guard let v = port.vlan.untaggedVLAN else { throw .trunkNeedsVLAN(port: name, mode: port.vlan.description) }
            vlan = v
        }
        guard sw.database.addStatic(FDBKey(vlan: vlan, mac: mac), port: port.index) else {
            throw .databaseFull(capacity: sw.database.capacity)
        }
        logger.info("fdb: static \(mac) vlan \(vlan) on port \(name)")
    }

    /// `fdb-del`: removes the entry, static or learned, for a MAC in a VLAN (default 1).
    private func remove(mac text: String, vlan given: Int?) throws(ControlError) {
        let mac = try Self.macAddress(text)
        // ControlProtocol.vlanIDs held it, so it fits.
        let vlan = given.map { UInt16($0) } ?? VLANMode.defaultVLAN
        guard sw.database.remove(FDBKey(vlan: vlan, mac: mac)) else {
            throw .noEntry(mac: mac.description, vlan: Int(vlan))
        }
        logger.info("fdb: removed \(mac) vlan \(vlan)")
    }

    /// `stats`: the counters since the last `stats-clear` (or since the start), each port
    /// with its rates over the sampler's last interval.
    private func statistics(now: Double) -> StatsReply {
        let ports = sw.ports
        let absolute = StatsReport.reply(sw)
        var reply = counterMark?.counts(since: absolute, ports: ports) ?? absolute
        for (i, port) in zip(reply.ports.indices, ports) { reply.ports[i].rates = rates.rates(of: port) }
        reply.elapsed = ((now - (counterMark?.time ?? startTime)) * 10).rounded() / 10
        reply.cleared = counterMark != nil
        return reply
    }

    /// `fdb-flush`: removes the learned entries (static ones too when asked) of a port and/or
    /// a VLAN, or all of them, as the Linux bridge's `fdb_flush` removes its dynamic entries.
    private func flush(_ filter: FDBFlushFilter) throws(ControlError) -> Int {
        var index: PortIndex?
        if let name = filter.port {
            guard let port = sw.port(named: name) else { throw .refused(SwitchError.unknownPort(name).description) }
            index = port.index
        }
        // ControlProtocol.vlanIDs held it, so it fits.
        let removed = sw.database.flush(port: index, vlan: filter.vlan.map { UInt16($0) },
                                        includingStatic: filter.includingStatic)
        let scope = [filter.port.map { "port \($0)" }, filter.vlan.map { "vlan \($0)" }].compactMap { $0 }
        let kinds = filter.includingStatic ? "learned and static" : "learned"
        let within = scope.isEmpty ? "" : " (\(scope.joined(separator: ", ")))"
        logger.info("fdb: flushed \(removed) \(kinds) entries\(within)")
        return removed
    }

    /// `port` `add`: opens a port from a spec while the others forward.
    private func addPort(_ text: String) throws(ControlError) -> PortInfo {
        let spec: PortSpec
        do throws(PortSpec.ParseError) { spec = try PortSpec(parsing: text) } catch {
            throw .refused(error.description)
        }
        // Listening there would unlink this very socket.
        if case .vhost(let socket, _, _, _) = spec.kind, socket == path {
            throw .controlSocketAsPort(spec: text, path: socket)
        }
        do throws(SwitchError) { return PortsReport.port(try sw.addPort(spec)) } catch {
            throw .refused(error.description)
        }
    }

    /// `port` `del`: removes a port by name; the reply describes it as it was.
    private func removePort(_ name: String) throws(ControlError) -> PortInfo {
        guard let port = sw.port(named: name) else { throw .refused(SwitchError.unknownPort(name).description) }
        // Described before it goes: once removed, its state no longer says what it was.
        let report = PortsReport.port(port)
        do throws(SwitchError) { try sw.removePort(named: name) } catch { throw .refused(error.description) }
        return report
    }

    /// `"mac"`: six hex pairs separated by ':' or '-'.
    private static func macAddress(_ text: String) throws(ControlError) -> MACAddress {
        guard let mac = MACAddress(text) else { throw .notAMACAddress(text) }
        return mac
    }
}
