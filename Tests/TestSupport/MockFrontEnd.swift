import Glibc
import Logging
import Platform
import VhostUser
import Virtio

/// A vhost-user front-end that talks to a `VhostDevice` directly, as the
/// control thread would after decoding: it lays out one queue pair in test
/// guest RAM and walks the device through the usual set-up sequence, with
/// split rings or (`packed`) packed ones in the same places.
public final class MockFrontEnd {
    public let device: VhostDevice
    public let ram: GuestRAM
    public let rx: MockSplitRing
    public let tx: MockSplitRing
    /// The rings a packed front-end drives instead of `rx` and `tx`.
    public let packed: (rx: MockPackedRing, tx: MockPackedRing)?
    /// The receive and transmit rings this front-end drives, in its layout.
    public var receiveRing: any MockDriverRing { packed?.rx ?? rx }
    public var transmitRing: any MockDriverRing { packed?.tx ?? tx }
    /// Raw eventfds (closed in deinit): ~Copyable descriptors cannot live in an array.
    public let calls: [Int32]
    public let kicks: [Int32]

    /// `ram`: the guest's RAM, one region of `ramSize` bytes unless given (two regions put
    /// the TX ring's buffers in the second). The RX ring sits at its start, the TX ring
    /// 32 KiB in; RX buffers take the first half, TX buffers the second.
    public init(device: VhostDevice, ramSize: Int = 8 << 20, packed: Bool = false, ram: GuestRAM? = nil) throws {
        self.device = device
        let ram = try ram ?? GuestRAM.oneRegion(size: ramSize)
        let ramSize = ram.shared.length
        self.ram = ram
        let rxBuffers = ram.base + 0x10000 ..< ram.base + UInt64(ramSize / 2)
        let txBuffers = ram.base + UInt64(ramSize / 2) ..< ram.base + UInt64(ramSize)
        rx = MockSplitRing(ram: ram, size: 256, at: ram.base, buffers: rxBuffers)
        tx = MockSplitRing(ram: ram, size: 256, at: ram.base + 0x8000, buffers: txBuffers)
        self.packed = packed ? (MockPackedRing(ram: ram, size: 256, at: ram.base, buffers: rxBuffers),
                                MockPackedRing(ram: ram, size: 256, at: ram.base + 0x8000, buffers: txBuffers)) : nil
        calls = try [EventFD.create().release(), EventFD.create().release()]
        kicks = try [EventFD.create().release(), EventFD.create().release()]
    }

    deinit { for fd in calls + kicks { close(fd) } }

    /// Sends one message; `fds` are duplicated so the device owns its copies.
    @discardableResult
    public func send(_ request: VhostUserRequest, _ payload: VhostUserMessage.Payload = .none, fds: [Int32] = [],
                     needReply: Bool = false) -> VhostDevice.Outcome {
        let flags = VhostUserHeader.version | (needReply ? VhostUserHeader.needReplyFlag : 0)
        let message = VhostUserMessage(request: request, flags: flags, payload: payload,
                                       descriptors: ReceivedDescriptors(owning: fds.map { dup($0) }))
        return device.handle(message)
    }

    public var features: UInt64 {
        (VirtioNetFeatures.version1.rawValue | VirtioNetFeatures.mergeableRxBuffers.rawValue
            | VirtioNetFeatures.protocolFeatures.rawValue | VirtioNetFeatures.csum.rawValue
            | VirtioNetFeatures.guestCsum.rawValue | VirtioNetFeatures.hostTSO4.rawValue
            | VirtioNetFeatures.hostTSO6.rawValue | VirtioNetFeatures.guestTSO4.rawValue
            | VirtioNetFeatures.guestTSO6.rawValue)
    }

    /// The set-up QEMU and DPDK perform, up to DRIVER_OK; `withoutFeatures`
    /// are left out of the usual set (a guest without GUEST_CSUM, say). The memory
    /// table holds the first `tableRegions` of the RAM's regions (all by default);
    /// a test adds the others with ADD_MEM_REG (`addRegion`).
    public func setUp(protocolFeatures: VhostUserProtocolFeatures = [.replyAck, .status], eventIndex: Bool = false,
                      withoutFeatures: UInt64 = 0, tableRegions: Int? = nil) {
        send(.setOwner)
        let layout = packed == nil ? 0 : VirtioNetFeatures.ringPacked.rawValue
        send(.setFeatures, .u64((features | layout | (eventIndex ? VirtioNetFeatures.eventIndex.rawValue : 0))
                                & ~withoutFeatures))
        send(.setProtocolFeatures, .u64(protocolFeatures.rawValue))
        let table = ram.regions.prefix(tableRegions ?? ram.regions.count)
        send(.setMemTable, .memoryTable(table.map(Self.message)), fds: table.map { _ in ram.shared.fd.rawValue })
        for (index, ring) in [(UInt32(0), rx), (UInt32(1), tx)] {
            send(.setVringNum, .vringState(index: index, num: UInt32(ring.size)))
            if let packed {
                // Position 0, both wrap counters 1, as DPDK's virtio-user sends it.
                let p = index == 0 ? packed.rx : packed.tx
                send(.setVringBase, .vringState(index: index, num: 0x8000))
                send(.setVringAddr, .vringAddress(VringAddress(
                    index: index, flags: 0, descUserAddr: ram.frontEndAddress(p.ringGPA).rawValue,
                    usedUserAddr: ram.frontEndAddress(p.deviceEventGPA).rawValue,
                    availUserAddr: ram.frontEndAddress(p.driverEventGPA).rawValue, logGuestAddr: 0)))
            } else {
                send(.setVringBase, .vringState(index: index, num: 0))
                send(.setVringAddr, .vringAddress(VringAddress(
                    index: index, flags: 0, descUserAddr: ram.frontEndAddress(ring.descGPA).rawValue,
                    usedUserAddr: ram.frontEndAddress(ring.usedGPA).rawValue,
                    availUserAddr: ram.frontEndAddress(ring.availGPA).rawValue, logGuestAddr: 0)))
            }
            send(.setVringCall, .vringFile(index: index, hasFD: true), fds: [calls[Int(index)]])
            send(.setVringKick, .vringFile(index: index, hasFD: true), fds: [kicks[Int(index)]])
            send(.setVringEnable, .vringState(index: index, num: 1))
        }
        send(.setStatus, .u64(15))
    }

    /// A region as the wire carries it.
    public static func message(_ r: GuestMemoryRegionInfo) -> MemoryRegionInfo {
        MemoryRegionInfo(guestPhysAddr: r.guestPhysicalAddress, size: r.size, userAddr: r.frontEndAddress,
                         mmapOffset: r.mmapOffset)
    }

    /// ADD_MEM_REG of the RAM's region `index`, asking for a REPLY_ACK.
    @discardableResult
    public func addRegion(_ index: Int) -> VhostDevice.Outcome {
        send(.addMemReg, .memoryRegion(Self.message(ram.regions[index])), fds: [ram.shared.fd.rawValue], needReply: true)
    }

    /// REM_MEM_REG of the RAM's region `index`, asking for a REPLY_ACK.
    @discardableResult
    public func removeRegion(_ index: Int) -> VhostDevice.Outcome {
        send(.remMemReg, .memoryRegion(Self.message(ram.regions[index])), needReply: true)
    }
}

/// A logger that keeps what was logged, so tests can assert on the one line a fault produces.
public final class CapturedLog: @unchecked Sendable {
    public private(set) var lines: [String] = []
    public init() {}
    public var logger: Logger {
        Logger(label: "test") { _ in CapturingHandler(log: self) }
    }
    func append(_ s: String) { lines.append(s) }

    struct CapturingHandler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
                 file: String, function: String, line: UInt) {
            log.append("\(level) \(message)")
        }
    }
}
