import CBPF
import Glibc
import Model
import Packets

/// The maps the AF_XDP port and the control plane fill. Each call is one
/// bpf() syscall on a descriptor kept since load.
extension SteeringProgram {
    /// Steers frames arriving on receive queue `queue` to AF_XDP socket `fd`
    /// (bound to this interface and queue). The map holds queues 0..<64.
    public func setSocket(queue: UInt32, fd: Int32) throws(XDPError) {
        var key = queue
        var value = UInt32(bitPattern: fd)
        let result = bpf_map_update_elem(maps.sockets, &key, &value, UInt64(BPF_ANY))
        guard result == 0 else {
            throw .mapUpdateFailed(map: SteeringMaps.socketsName, reason: "queue \(queue), socket \(fd): \(libbpfErrorText(result))")
        }
    }

    /// Frames of `queue` addressed to guests go to the kernel again (the
    /// redirect's default action). A queue without a socket is not an error.
    public func clearSocket(queue: UInt32) throws(XDPError) {
        var key = queue
        let result = bpf_map_delete_elem(maps.sockets, &key)
        guard result == 0 || -result == ENOENT else {
            throw .mapUpdateFailed(map: SteeringMaps.socketsName, reason: "clear queue \(queue): \(libbpfErrorText(result))")
        }
    }

    /// Steers unicast frames to `mac` on `vlan` (0: untagged on the wire) to Ferry.
    public func addGuest(_ mac: MACAddress, vlan: UInt16) throws(XDPError) {
        var key = try Self.key(mac, vlan)
        var flags: UInt32 = 0
        let result = bpf_map_update_elem(maps.guests, &key, &flags, UInt64(BPF_ANY))
        guard result == 0 else {
            // E2BIG: the map holds guestCapacity entries.
            throw .mapUpdateFailed(map: SteeringMaps.guestsName, reason: "add \(mac) VLAN \(vlan): \(libbpfErrorText(result))")
        }
    }

    /// Stops steering frames to `mac` on `vlan`; a guest that was never added is not an error.
    public func removeGuest(_ mac: MACAddress, vlan: UInt16) throws(XDPError) {
        var key = try Self.key(mac, vlan)
        let result = bpf_map_delete_elem(maps.guests, &key)
        guard result == 0 || -result == ENOENT else {
            throw .mapUpdateFailed(map: SteeringMaps.guestsName, reason: "remove \(mac) VLAN \(vlan): \(libbpfErrorText(result))")
        }
    }

    /// Steers UDP datagrams to `address`:`port` (a vxlan port's local end, `via=`)
    /// to Ferry: IPv4 without options or IPv6 without extension headers, never a fragment.
    public func addTunnel(_ address: InternetAddress, port: UInt16) throws(XDPError) {
        var key = TunnelKey(address: address, port: port).bytes
        var flags: UInt32 = 0
        let result = bpf_map_update_elem(maps.tunnels, &key, &flags, UInt64(BPF_ANY))
        guard result == 0 else {
            throw .mapUpdateFailed(map: SteeringMaps.tunnelsName, reason: "add \(address) port \(port): \(libbpfErrorText(result))")
        }
    }

    /// Datagrams to `address`:`port` go to the kernel again; one never added is not an error.
    public func removeTunnel(_ address: InternetAddress, port: UInt16) throws(XDPError) {
        var key = TunnelKey(address: address, port: port).bytes
        let result = bpf_map_delete_elem(maps.tunnels, &key)
        guard result == 0 || -result == ENOENT else {
            throw .mapUpdateFailed(map: SteeringMaps.tunnelsName, reason: "remove \(address) port \(port): \(libbpfErrorText(result))")
        }
    }

    /// VXLAN datagrams the program redirected to Ferry, summed over every CPU.
    public func tunnelDatagrams() -> UInt64 { total(.tunnel) }

    /// Every (MAC, VLAN) steered now, in the map's order (for tests and `ferry ctl`).
    public func guests() -> [(MACAddress, UInt16)] {
        var found: [(MACAddress, UInt16)] = []
        var current = GuestKey()
        var next = GuestKey()
        var result = bpf_map_get_next_key(maps.guests, nil, &next)
        while result == 0 {
            found.append((next.mac, next.vlan))
            current = next
            result = bpf_map_get_next_key(maps.guests, &current, &next)
        }
        // ENOENT ends the walk; anything else means a bad descriptor or key: ours.
        precondition(-result == ENOENT, "bpf_map_get_next_key(\(SteeringMaps.guestsName)): \(libbpfErrorText(result))")
        return found
    }

    /// The program's counters, summed over every CPU.
    public func statistics() -> (steered: UInt64, passed: UInt64, malformed: UInt64) {
        (total(.steered), total(.passed), total(.malformed))
    }

    private func total(_ counter: SteeringMaps.Counter) -> UInt64 {
        var perCPU = [UInt64](repeating: 0, count: SteeringMaps.possibleCPUs)
        var key = counter.rawValue
        let result = bpf_map_lookup_elem(maps.statistics, &key, &perCPU)
        // Index < max_entries on a map we created: failing is our bug.
        precondition(result == 0, "bpf_map_lookup_elem(\(SteeringMaps.statisticsName), \(key)): \(libbpfErrorText(result))")
        return perCPU.reduce(0, &+)
    }

    private static func key(_ mac: MACAddress, _ vlan: UInt16) throws(XDPError) -> GuestKey {
        guard vlan <= GuestKey.maxVLAN else {
            throw .mapUpdateFailed(map: SteeringMaps.guestsName, reason: "VLAN \(vlan) is not a 12-bit VID (0...\(GuestKey.maxVLAN))")
        }
        return GuestKey(mac: mac, vlan: vlan)
    }
}
