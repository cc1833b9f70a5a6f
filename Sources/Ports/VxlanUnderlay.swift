import CFerry
import Glibc
import Logging
import Model
import Packets
import Platform

/// The AF_XDP fast path of a vxlan port (`via=PORTNAME`): what the port
/// needs to send its datagrams as whole Ethernet frames through an `xdp:`
/// uplink instead of the kernel's UDP stack, the uplink's port never named.
///
/// Per remote VTEP it keeps the outer Ethernet and IP headers ready (a
/// template: the next hop's MAC from the kernel's neighbour table, the
/// uplink's MAC, the addresses), so that the data path only fills lengths and
/// the IPv4 checksum (from a precomputed partial sum). The control thread
/// resolves them (`service`): the route to the VTEP (its next hop, which must
/// be reached through the uplink), then the next hop's neighbour entry; a
/// VTEP that has none yet is sent one UDP datagram through the kernel (port
/// 9, discard), which makes the kernel resolve it; a stale entry is confirmed
/// the same way. Entries are read again every `refreshInterval`, and at once
/// when the data path met a VTEP without one (`want`), whose frames are
/// dropped as `vxlan_unresolved_vtep` meanwhile.
///
/// A template is double-buffered: the control thread writes the one not in
/// use and then publishes its number (release), so a worker never reads a
/// half-written header; two rewrites within one burst (a second apart at the
/// least) would be needed to tear one.
///
/// The encapsulated frames of one push are built in `out` (the outer headers
/// in `blocks`, one block per frame, then the inner frame by reference), which
/// the engine hands to the uplink; both are used under the vxlan port's
/// transmit queue, so one worker at a time.
public final class VxlanUnderlay: ControlLoopClient {
    /// The `xdp:` port's name (`via=`).
    public let portName: String
    public let ipv6: Bool
    let local: InternetAddress
    let endpoints: TunnelEndpoints
    let logger: Logger

    /// Outer Ethernet plus IP header: 34 bytes over IPv4, 54 over IPv6.
    @inlinable public var outerLength: Int { Ethernet.headerSize &+ (ipv6 ? VXLAN.ipv6HeaderSize : VXLAN.ipv4HeaderSize) }
    /// Each VTEP's two templates, `templateStride` bytes each.
    @usableFromInline static var templateStride: Int { 64 }
    /// A frame's outer headers in `blocks`: Ethernet, IP, UDP, VXLAN (70 bytes at most).
    @usableFromInline static var blockStride: Int { 128 }
    @usableFromInline let templates: UnsafeMutableRawPointer
    /// Per VTEP number: 0 unresolved, 1 or 2 the template in use.
    @usableFromInline let selected: UnsafeMutablePointer<UInt32>
    /// Per template: the IPv4 header's sum without its total length, or the
    /// IPv6 pseudo-header's sum without the UDP length (folded, host order).
    @usableFromInline let partialSums: UnsafeMutablePointer<UInt32>
    /// Per VTEP number: the data path met it unresolved (the control thread clears it).
    @usableFromInline let wanted: UnsafeMutablePointer<UInt32>
    @usableFromInline let wantedAny: UnsafeMutablePointer<UInt32>
    /// The frames of one push, for the uplink.
    public let out: PacketBatch
    @usableFromInline let blocks: UnsafeMutableRawPointer
    /// A frame's first bytes, gathered when its headers are split over segments (for the flow hash).
    @usableFromInline let headerScratch: UnsafeMutableRawPointer
    @usableFromInline static var headerScratchSize: Int { 128 }

    // Control thread.
    private var interfaceName: String?
    private var interfaceIndex: Int32 = 0
    private var interfaceMAC: UInt64 = 0
    private var lookup: NeighbourLookup?
    /// A UDP socket for `provoke` (-1 until connected); closed with the object.
    private var trigger: Int32 = -1
    private var checkedAt: [Double]
    private var nextMAC: [UInt64]
    private var lastRefusal: [String]
    /// How often a resolved VTEP's neighbour entry is read again.
    public static let refreshInterval = 5.0
    /// How often an unresolved one is tried, wanted or not.
    public static let retryInterval = 1.0

    // SAFETY: every table is allocated here with endpoints.capacity + 1 entries (VTEP numbers are
    // SAFETY: 1...capacity) and filled before use; blocks hold batchCapacity blocks, one per frame of `out`.
    init(portName: String, local: InternetAddress, endpoints: TunnelEndpoints, batchCapacity: Int, logger: Logger) {
        self.portName = portName
        ipv6 = local.isIPv6
        self.local = local
        self.endpoints = endpoints
        self.logger = logger
        let entries = endpoints.capacity + 1
        templates = .allocate(byteCount: entries * 2 * Self.templateStride, alignment: 64)
        templates.initializeMemory(as: UInt8.self, repeating: 0, count: entries * 2 * Self.templateStride)
        selected = .allocate(capacity: entries)
        selected.initialize(repeating: 0, count: entries)
        partialSums = .allocate(capacity: entries * 2)
        partialSums.initialize(repeating: 0, count: entries * 2)
        wanted = .allocate(capacity: entries)
        wanted.initialize(repeating: 0, count: entries)
        wantedAny = .allocate(capacity: 1)
        wantedAny.initialize(to: 0)
        // A frame and a flood to every VTEP each take a block; segments: the block and the frame's own.
        out = PacketBatch(capacity: batchCapacity, segmentsPerFrame: 8)
        blocks = .allocate(byteCount: batchCapacity * Self.blockStride, alignment: 64)
        blocks.initializeMemory(as: UInt8.self, repeating: 0, count: batchCapacity * Self.blockStride)
        headerScratch = .allocate(byteCount: Self.headerScratchSize, alignment: 16)
        checkedAt = Array(repeating: -Double.infinity, count: entries)
        nextMAC = Array(repeating: 0, count: entries)
        lastRefusal = Array(repeating: "", count: entries)
    }

    // SAFETY: each allocation of init, freed once.
    deinit {
        templates.deallocate()
        selected.deallocate()
        partialSums.deallocate()
        wanted.deallocate()
        wantedAny.deallocate()
        blocks.deallocate()
        headerScratch.deallocate()
        if trigger >= 0 { close(trigger) }
    }

    /// The uplink the switch wired (`via=` named an `xdp:` port on `interface`):
    /// every VTEP is resolved again for it. Control thread, while no worker sends.
    // SAFETY: e runs over 0...capacity, inside `selected` (capacity + 1 entries).
    public func connect(interface: String) throws {
        let index = Int32(try NetworkInterface.index(of: interface))
        if interfaceName == interface && interfaceIndex == index { return }
        interfaceName = interface
        interfaceIndex = index
        interfaceMAC = try NetworkInterface.hardwareAddress(of: interface).array.reduce(0) { $0 << 8 | UInt64($1) }
        if lookup == nil { lookup = try NeighbourLookup() }
        if trigger < 0 {
            let family = ipv6 ? AF_INET6 : AF_INET
            trigger = try syscall("socket(UDP, neighbour trigger)") {
                socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            }
        }
        for e in 0...endpoints.capacity {
            ferry_store_release_u32(selected + e, 0)
            checkedAt[e] = -Double.infinity
        }
    }

    /// The uplink is gone from the switch (control thread).
    // SAFETY: e runs over 0...capacity, inside `selected` (capacity + 1 entries).
    public func disconnect() {
        interfaceName = nil
        interfaceIndex = 0
        for e in 0...endpoints.capacity { ferry_store_release_u32(selected + e, 0) }
    }

    public var connectedInterface: String? { interfaceName }

    /// VTEPs whose outer headers are ready, for `show ports` and tests.
    // SAFETY: the index runs over 0...capacity, inside `selected`.
    public var resolvedCount: Int {
        (0...endpoints.capacity).reduce(0) { $0 + (ferry_load_acquire_u32(selected + $1) != 0 ? 1 : 0) }
    }

    // MARK: Data path

    /// The template in use for VTEP `number` (1 or 2), or 0 when it has none:
    /// then the VTEP is marked wanted for the control thread.
    // SAFETY: number is a VTEP number the push took from `endpoints` (1...count ≤ capacity), inside
    // SAFETY: `selected` and `wanted`; wantedAny is one word.
    @inlinable
    func template(for number: Int) -> Int {
        let which = Int(ferry_load_acquire_u32(selected + number))
        if which == 0 {
            ferry_store_relaxed_u32(wanted + number, 1)
            ferry_store_relaxed_u32(wantedAny, 1)
        }
        return which
    }

    /// Writes the outer Ethernet, IP, UDP and VXLAN headers for VTEP `number`
    /// (template `which`) and an inner frame of `innerLength` bytes into
    /// `block`; returns their length. The UDP checksum is zero over IPv4
    /// (RFC 7348 §5); over IPv6 the field holds the pseudo-header sum and the
    /// caller asks for the rest to be finished (NEEDS_CSUM), as the uplink does while copying.
    // SAFETY: `block` is one of `blocks` (blockStride = 128 bytes ≥ 70, the longest outer headers);
    // SAFETY: slot = number·2 + which − 1 with number ≤ capacity and which 1 or 2, inside `templates`
    // SAFETY: (templateStride = 64 ≥ 54 bytes copied) and `partialSums`.
    @inlinable
    func writeHeaders(_ number: Int, template which: Int, into block: UnsafeMutableRawPointer, innerLength: Int,
                      sourcePort: UInt16, destinationPort: UInt16, vni: UInt32) -> Int {
        let slot = number &* 2 &+ (which &- 1)
        let outer = outerLength
        block.copyMemory(from: templates + slot &* Self.templateStride, byteCount: outer)
        let udpLength = VXLAN.udpHeaderSize &+ VXLAN.headerSize &+ innerLength
        let ip = block + Ethernet.headerSize
        var udpChecksum: UInt16 = 0
        if ipv6 {
            ip.storeBytes(of: UInt16(truncatingIfNeeded: udpLength).bigEndian, toByteOffset: 4, as: UInt16.self)
            udpChecksum = Self.fold(partialSums[slot] &+ UInt32(truncatingIfNeeded: udpLength))
        } else {
            let total = VXLAN.ipv4HeaderSize &+ udpLength
            ip.storeBytes(of: UInt16(truncatingIfNeeded: total).bigEndian, toByteOffset: 2, as: UInt16.self)
            let sum = Self.fold(partialSums[slot] &+ UInt32(truncatingIfNeeded: total))
            ip.storeBytes(of: (~sum).bigEndian, toByteOffset: 10, as: UInt16.self)
        }
        let udp = block + outer
        udp.storeBytes(of: sourcePort.bigEndian, as: UInt16.self)
        udp.storeBytes(of: destinationPort.bigEndian, toByteOffset: 2, as: UInt16.self)
        udp.storeBytes(of: UInt16(truncatingIfNeeded: udpLength).bigEndian, toByteOffset: 4, as: UInt16.self)
        udp.storeBytes(of: udpChecksum.bigEndian, toByteOffset: 6, as: UInt16.self)
        VXLAN.writeHeader(vni: vni, at: udp + VXLAN.udpHeaderSize)
        return outer &+ VXLAN.udpHeaderSize &+ VXLAN.headerSize
    }

    /// A ones'-complement sum of 16-bit words folded to 16 bits.
    @inlinable
    static func fold(_ sum: UInt32) -> UInt16 {
        var s = sum
        while s >> 16 != 0 { s = (s & 0xFFFF) &+ (s >> 16) }
        return UInt16(truncatingIfNeeded: s)
    }

    // MARK: Control thread

    public var pollDescriptors: [Int32] { [] }

    // SAFETY: wantedAny is one allocated word.
    public func timeout(now: Double) -> Double? {
        guard interfaceName != nil else { return nil }
        if ferry_load_relaxed_u32(wantedAny) != 0 { return 0 }
        return Self.retryInterval
    }

    // SAFETY: e runs over 1...endpoints.count ≤ capacity, inside `selected` and `wanted`; wantedAny is one word.
    public func service(now: Double) {
        guard interfaceName != nil else { return }
        let anyWanted = ferry_load_relaxed_u32(wantedAny) != 0
        ferry_store_relaxed_u32(wantedAny, 0)
        let count = endpoints.count
        guard count > 0 else { return }
        for e in 1...count {
            let resolved = ferry_load_acquire_u32(selected + e) != 0
            let isWanted = anyWanted && ferry_load_relaxed_u32(wanted + e) != 0
            let due = now - checkedAt[e] >= (resolved ? Self.refreshInterval : Self.retryInterval)
            // A wanted VTEP is looked up at once, but not more than ten times a second.
            guard due || (isWanted && now - checkedAt[e] >= 0.1) else { continue }
            ferry_store_relaxed_u32(wanted + e, 0)
            checkedAt[e] = now
            resolve(e)
        }
    }

    /// Looks VTEP `number`'s next hop and its MAC up, and publishes a template when found.
    func resolve(_ number: Int) {
        guard let lookup, let interfaceName else { return }
        let destination = endpoints.address(number)
        do {
            let hop = try lookup.nextHop(to: destination)
            guard hop.interfaceIndex == interfaceIndex else {
                refuse(number, "the route to \(destination) leaves through interface \(hop.interfaceIndex), "
                       + "not \(interfaceName) (\(interfaceIndex)): its frames are dropped as vxlan_unresolved_vtep")
                return
            }
            guard let neighbour = try lookup.neighbour(hop.address, interfaceIndex: interfaceIndex) else {
                // Kept if it had one: the entry went away (garbage collection), the MAC is likely the same.
                provoke(destination)
                return
            }
            if neighbour.isStale { provoke(destination) }
            publish(number, nextHopMAC: neighbour.mac)
            if !lastRefusal[number].isEmpty {
                lastRefusal[number] = ""
                logger.info("vxlan via \(portName): VTEP \(destination) resolved through \(hop.address) on \(interfaceName)")
            }
        } catch {
            refuse(number, "cannot find the route or neighbour of \(destination): \(error)")
        }
    }

    // SAFETY: number ≤ endpoints.count ≤ capacity, inside `selected`.
    private func refuse(_ number: Int, _ why: String) {
        ferry_store_release_u32(selected + number, 0)
        if lastRefusal[number] != why {
            lastRefusal[number] = why
            logger.warning("vxlan via \(portName): \(why)")
        }
    }

    /// One datagram to the VTEP's discard port through the kernel: it resolves
    /// (or confirms) the next hop's MAC on the way, which the kernel does only when it sends.
    private func provoke(_ destination: InternetAddress) {
        guard trigger >= 0 else { return }
        let fd = trigger
        var address = sockaddr_in6()
        var byte: UInt8 = 0
        let length = destination.socketAddressLength
        // SAFETY: sockaddr_in6 is large enough for either family's address, which
        // writeSocketAddress fills (`length` bytes); sendto reads one byte of `byte`.
        withUnsafeMutableBytes(of: &address) { destination.writeSocketAddress(port: 9, to: $0.baseAddress!) }
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, &byte, 1, Int32(MSG_DONTWAIT), $0, socklen_t(length))
            }
        }
    }

    /// Writes the template not in use for VTEP `number` and makes it the one in use.
    // SAFETY: number ≤ endpoints.count ≤ capacity; slot = number·2 + which − 1 inside
    // SAFETY: `templates` (2 × templateStride bytes per VTEP) and `partialSums` (2 per VTEP).
    func publish(_ number: Int, nextHopMAC: UInt64) {
        let current = Int(ferry_load_acquire_u32(selected + number))
        if current != 0 && nextMAC[number] == nextHopMAC { return }
        let which = current == 1 ? 2 : 1
        let slot = number * 2 + (which - 1)
        let p = templates + slot * Self.templateStride
        Self.writeTemplate(at: p, destinationMAC: nextHopMAC, sourceMAC: interfaceMAC, local: local,
                           remote: endpoints.address(number))
        partialSums[slot] = Self.partialSum(template: p, ipv6: ipv6)
        nextMAC[number] = nextHopMAC
        ferry_store_release_u32(selected + number, UInt32(which))
    }

    /// Ethernet, then IPv4 (DF set, ID 0: RFC 6864 for datagrams never fragmented;
    /// TTL 64, UDP; length and checksum left to the data path) or IPv6 (hop limit 64,
    /// UDP; payload length left to the data path).
    // SAFETY: p is a template of templateStride (64) bytes, more than the 54 written.
    static func writeTemplate(at p: UnsafeMutableRawPointer, destinationMAC: UInt64, sourceMAC: UInt64,
                              local: InternetAddress, remote: InternetAddress) {
        p.initializeMemory(as: UInt8.self, repeating: 0, count: templateStride)
        for i in 0..<6 {
            p.storeBytes(of: UInt8(truncatingIfNeeded: destinationMAC >> UInt64(40 - 8 * i)), toByteOffset: i, as: UInt8.self)
            p.storeBytes(of: UInt8(truncatingIfNeeded: sourceMAC >> UInt64(40 - 8 * i)), toByteOffset: 6 + i, as: UInt8.self)
        }
        let ip = p + Ethernet.headerSize
        if local.isIPv6 {
            p.storeBytes(of: UInt16(0x86DD).bigEndian, toByteOffset: 12, as: UInt16.self)
            ip.storeBytes(of: UInt32(0x6000_0000).bigEndian, as: UInt32.self)
            ip.storeBytes(of: 17, toByteOffset: 6, as: UInt8.self)
            ip.storeBytes(of: 64, toByteOffset: 7, as: UInt8.self)
            ip.storeBytes(of: local.high.bigEndian, toByteOffset: 8, as: UInt64.self)
            ip.storeBytes(of: local.low.bigEndian, toByteOffset: 16, as: UInt64.self)
            ip.storeBytes(of: remote.high.bigEndian, toByteOffset: 24, as: UInt64.self)
            ip.storeBytes(of: remote.low.bigEndian, toByteOffset: 32, as: UInt64.self)
        } else {
            p.storeBytes(of: UInt16(0x0800).bigEndian, toByteOffset: 12, as: UInt16.self)
            ip.storeBytes(of: 0x45, as: UInt8.self)
            ip.storeBytes(of: UInt16(0x4000).bigEndian, toByteOffset: 6, as: UInt16.self)
            ip.storeBytes(of: 64, toByteOffset: 8, as: UInt8.self)
            ip.storeBytes(of: 17, toByteOffset: 9, as: UInt8.self)
            ip.storeBytes(of: UInt32(truncatingIfNeeded: local.low).bigEndian, toByteOffset: 12, as: UInt32.self)
            ip.storeBytes(of: UInt32(truncatingIfNeeded: remote.low).bigEndian, toByteOffset: 16, as: UInt32.self)
        }
    }

    /// IPv4: the header's words with length and checksum zero. IPv6: the
    /// pseudo-header's addresses and next header (RFC 8200 §8.1), the UDP length left out.
    // SAFETY: p is a template of templateStride (64) bytes; the words read end at byte 54.
    static func partialSum(template p: UnsafeRawPointer, ipv6: Bool) -> UInt32 {
        let ip = p + Ethernet.headerSize
        var sum: UInt32 = 0
        func words(_ from: Int, _ to: Int) {
            var i = from
            while i < to {
                sum += UInt32(UInt16(bigEndian: ip.loadUnaligned(fromByteOffset: i, as: UInt16.self)))
                i += 2
            }
        }
        if ipv6 {
            words(8, 40)
            sum += 17
        } else {
            words(0, 20)
        }
        return UInt32(fold(sum))
    }
}
