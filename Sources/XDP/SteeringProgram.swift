import CBPF
import Glibc
import Logging
import Model
import Platform
import Synchronization

/// Ferry's XDP program on one uplink interface (bpf/ferry_steer.bpf.c): frames
/// addressed to a guest go to the AF_XDP socket of their receive queue,
/// everything else to the host's kernel.
///
/// Attaching never takes an interface from someone else. What is on the hook
/// decides: nothing — attach; a `ferry_steer` whose owner (the pid in its
/// `ferry_owner` map) is gone — a Ferry killed with SIGKILL left it: replace
/// it in one step (XDP_FLAGS_REPLACE), so the host's traffic sees no gap; a
/// `ferry_steer` whose owner lives — refuse (`busy`); any other program —
/// refuse (`foreignProgram`), it is never removed.
///
/// Map updates are single bpf() syscalls the kernel serialises, so any thread
/// may call them; they are control-plane operations, not per-packet ones.
public final class SteeringProgram: @unchecked Sendable {
    /// The name Ferry recognises its program by (BPF keeps 15 characters of a name).
    public static let programName = "ferry_steer"

    public let interfaceName: String
    public let interfaceIndex: UInt32
    /// The kernel's id of this program (`ip link` shows it as `prog/xdp id N`).
    public let programID: UInt32
    public let attachedMode: XDPAttachMode

    let maps: SteeringMaps
    private let object: BPFObject
    private let programDescriptor: Int32
    private let logger: Logger
    private let attached = Mutex(true)

    /// Program ids this process attached and has not detached: a `ferry_steer`
    /// naming our own pid is ours and alive only if it is in here; otherwise
    /// an earlier Ferry with the same pid left it (a restarted container's pid 1).
    private static let attachedByThisProcess = Mutex<Set<UInt32>>([])

    private init(interfaceName: String, interfaceIndex: UInt32, programID: UInt32, attachedMode: XDPAttachMode,
                 maps: SteeringMaps, object: BPFObject, programDescriptor: Int32, logger: Logger) {
        self.interfaceName = interfaceName
        self.interfaceIndex = interfaceIndex
        self.programID = programID
        self.attachedMode = attachedMode
        self.maps = maps
        self.object = object
        self.programDescriptor = programDescriptor
        self.logger = logger
    }

    deinit { detach() }

    /// Loads the steering program and attaches it to `interface`.
    ///
    /// - Parameters:
    ///   - mode: `.auto` tries native first and falls back to generic, saying why in one log line.
    ///   - guestCapacity: how many (MAC, VLAN) entries `ferry_guests` holds.
    public static func attach(interface: String, mode request: XDPAttachRequest, guestCapacity: Int,
                              logger: Logger) throws(XDPError) -> SteeringProgram {
        LibbpfLog.route(to: logger)
        let index = if_nametoindex(interface)
        guard index != 0 else { throw .unknownInterface(interface) }
        guard guestCapacity > 0, let capacity = UInt32(exactly: guestCapacity) else {
            throw .loadFailed(interface: interface, reason: "guest capacity \(guestCapacity) is not 1...\(UInt32.max)")
        }

        let object: BPFObject
        let maps: SteeringMaps
        let programDescriptor: Int32
        let programID: UInt32
        do throws(XDPObjectError) {
            object = try BPFObject(opening: .ferrySteer)
            try object.setMaxEntries(map: SteeringMaps.guestsName, capacity)
            try object.load()
            maps = try SteeringMaps(object)
            programDescriptor = try object.programDescriptor(programName)
            // The program never reads ferry_owner, so the kernel would not
            // count it among the program's maps: it would be freed with our
            // descriptors after a SIGKILL, and a later Ferry could not find it
            // through the program's map ids. Binding ties it to the program.
            let bound = bpf_prog_bind_map(programDescriptor, maps.owner, nil)
            guard bound == 0 else { throw XDPObjectError("bpf_prog_bind_map(\(SteeringMaps.ownerName))", bound) }
            programID = try AttachedProgram.id(ofProgram: programDescriptor)
        } catch {
            throw .loadFailed(interface: interface, reason: error.description)
        }
        // Before attaching: a program on the hook always names a pid.
        try writeOwner(getpid(), to: maps)

        let stale = try staleProgram(onInterface: index, named: interface)
        let mode: XDPAttachMode
        if let stale {
            mode = try replace(stale, with: programDescriptor, request: request, interface: interface, index: index,
                               logger: logger)
        } else {
            mode = try attachAnew(programDescriptor, request: request, interface: interface, index: index, logger: logger)
        }
        attachedByThisProcess.withLock { _ = $0.insert(programID) }
        logger.info("XDP steering program attached",
                    metadata: ["interface": "\(interface)", "mode": "\(mode)", "program": "\(programID)"])
        return SteeringProgram(interfaceName: interface, interfaceIndex: index, programID: programID,
                               attachedMode: mode, maps: maps, object: object,
                               programDescriptor: programDescriptor, logger: logger)
    }

    /// Removes the program from the interface if it is still the one attached
    /// (someone may have replaced it; theirs is left alone). Idempotent.
    public func detach() {
        let wasAttached = attached.withLock { attached in
            defer { attached = false }
            return attached
        }
        guard wasAttached else { return }
        Self.attachedByThisProcess.withLock { _ = $0.remove(programID) }
        // REPLACE with our descriptor as the expected program: the kernel
        // removes it only if it is still ours, in one step, with no window
        // for a program attached meanwhile to be removed instead.
        let result = LibbpfOptions.withZeroed(bpf_xdp_attach_opts.self) { options in
            options.pointee.sz = MemoryLayout<bpf_xdp_attach_opts>.size
            options.pointee.old_prog_fd = programDescriptor
            return bpf_xdp_detach(Int32(bitPattern: interfaceIndex), attachedMode.flags | UInt32(XDP_FLAGS_REPLACE), options)
        }
        switch -result {
        case 0:
            logger.info("XDP steering program detached", metadata: ["interface": "\(interfaceName)", "program": "\(programID)"])
        case EEXIST:
            logger.notice("XDP steering program was replaced by someone else; their program stays",
                          metadata: ["interface": "\(interfaceName)", "program": "\(programID)"])
        case ENODEV:
            logger.info("interface is gone, and the XDP program with it", metadata: ["interface": "\(interfaceName)"])
        default:
            logger.warning("cannot detach the XDP steering program: \(libbpfErrorText(result))",
                           metadata: ["interface": "\(interfaceName)", "program": "\(programID)"])
        }
    }

    /// Forgets the program without detaching it, as a Ferry killed with
    /// SIGKILL would: it stays on the interface (tests of stale programs).
    func abandon() {
        attached.withLock { $0 = false }
        Self.attachedByThisProcess.withLock { _ = $0.remove(programID) }
    }

    /// Writes `pid` into `ferry_owner` (internal: tests fake a dead owner with it).
    func writeOwner(_ pid: Int32) throws(XDPError) {
        try Self.writeOwner(pid, to: maps)
    }

    private static func writeOwner(_ pid: Int32, to maps: SteeringMaps) throws(XDPError) {
        var key: UInt32 = 0
        var value = UInt32(bitPattern: pid)
        let result = bpf_map_update_elem(maps.owner, &key, &value, UInt64(BPF_ANY))
        guard result == 0 else {
            throw .mapUpdateFailed(map: SteeringMaps.ownerName, reason: "pid \(pid): \(libbpfErrorText(result))")
        }
    }

    // MARK: What is on the hook

    /// Nil when the hook is free; a stale `ferry_steer` to replace; throws for anything else.
    private static func staleProgram(onInterface index: UInt32, named interface: String) throws(XDPError) -> AttachedProgram? {
        var stale: AttachedProgram?
        for program in try AttachedProgram.all(onInterface: index, named: interface) {
            guard program.name == programName, program.hook != .offloaded, let owner = program.ownerPID else {
                throw .foreignProgram(interface: interface, name: program.name, id: program.id)
            }
            if isAlive(owner: owner, of: program.id) {
                // A Ferry killed a moment ago may still be tearing down (closing
                // its sockets, unmapping its UMEM): give it a moment to go.
                var waited = 0
                while waited < 20 && isAlive(owner: owner, of: program.id) {
                    usleep(100_000)
                    waited += 1
                }
                if isAlive(owner: owner, of: program.id) { throw .busy(interface: interface, ownerPID: owner) }
            }
            stale = program
        }
        return stale
    }

    /// Whether the Ferry that wrote `owner` still runs. pid 0 was never written.
    private static func isAlive(owner: Int32, of programID: UInt32) -> Bool {
        guard owner > 0 else { return false }
        if owner == getpid() { return attachedByThisProcess.withLock { $0.contains(programID) } }
        // A killed process stays in /proc as a zombie until its parent reaps it.
        guard let stat = try? String(contentsOfProcFile: "/proc/\(owner)/stat"),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].drop(while: { $0 == " " }).first
        return state != "Z" && state != "X" && state != "x"
    }

    // MARK: Attaching

    private static func attachAnew(_ program: Int32, request: XDPAttachRequest, interface: String, index: UInt32,
                                   logger: Logger) throws(XDPError) -> XDPAttachMode {
        let onlyIfFree = UInt32(XDP_FLAGS_UPDATE_IF_NOEXIST)
        switch request {
        case .native, .generic:
            let mode: XDPAttachMode = request == .native ? .native : .generic
            try attach(program, mode: mode, flags: onlyIfFree, expected: nil, interface: interface, index: index)
            return mode
        case .auto:
            do throws(XDPError) {
                try attach(program, mode: .native, flags: onlyIfFree, expected: nil, interface: interface, index: index)
                return .native
            } catch {
                guard case .attachFailed(_, _, let reason) = error else { throw error }
                logger.notice("native XDP refused (\(reason)); using generic XDP, which runs after the kernel builds an skb",
                              metadata: ["interface": "\(interface)"])
                try attach(program, mode: .generic, flags: onlyIfFree, expected: nil, interface: interface, index: index)
                return .generic
            }
        }
    }

    /// Swaps `stale` for `program` in one step in the stale program's mode. If
    /// a different mode was asked for explicitly, that cannot be one step (the
    /// kernel holds one mode at a time): the stale program is removed first,
    /// and the gap is logged.
    private static func replace(_ stale: AttachedProgram, with program: Int32, request: XDPAttachRequest,
                                interface: String, index: UInt32, logger: Logger) throws(XDPError) -> XDPAttachMode {
        let staleMode: XDPAttachMode = stale.hook == .native ? .native : .generic
        let raw = bpf_prog_get_fd_by_id(stale.id)
        guard raw >= 0 else {
            throw .inspectionFailed(interface: interface, reason: "bpf_prog_get_fd_by_id(\(stale.id)): \(libbpfErrorText(raw))")
        }
        let staleDescriptor = FileDescriptor(owning: raw)
        let replaceFlag = UInt32(XDP_FLAGS_REPLACE)
        let metadata: Logger.Metadata = ["interface": "\(interface)", "stale program": "\(stale.id)",
                                         "owner": "\(stale.ownerPID ?? 0)"]
        let wanted: XDPAttachMode? = switch request {
        case .auto: nil
        case .native: .native
        case .generic: .generic
        }
        if wanted == nil || wanted == staleMode {
            try attach(program, mode: staleMode, flags: replaceFlag, expected: staleDescriptor.rawValue,
                       interface: interface, index: index)
            logger.notice("replaced the XDP program a Ferry that is gone left behind", metadata: metadata)
            return staleMode
        }
        try attach(-1, mode: staleMode, flags: replaceFlag, expected: staleDescriptor.rawValue,
                   interface: interface, index: index)
        logger.warning("""
            removed the XDP program a Ferry that is gone left in \(staleMode) mode to attach in the requested \
            mode: frames reached the kernel without steering for a moment
            """, metadata: metadata)
        return try attachAnew(program, request: request, interface: interface, index: index, logger: logger)
    }

    /// One bpf_xdp_attach; program -1 detaches. `expected` is the program that must be there (XDP_FLAGS_REPLACE).
    private static func attach(_ program: Int32, mode: XDPAttachMode, flags: UInt32, expected: Int32?,
                               interface: String, index: UInt32) throws(XDPError) {
        let (result, kernelMessage) = LibbpfOptions.withZeroed(bpf_xdp_attach_opts.self) { options in
            options.pointee.sz = MemoryLayout<bpf_xdp_attach_opts>.size
            options.pointee.old_prog_fd = expected ?? 0
            return LibbpfLog.withKernelMessage {
                bpf_xdp_attach(Int32(bitPattern: index), program, mode.flags | flags, options)
            }
        }
        guard result == 0 else {
            let hint = -result == EEXIST || -result == EBUSY ? " (another program was attached meanwhile)" : ""
            let why = kernelMessage.map { ": \($0)" } ?? ""
            throw .attachFailed(interface: interface, mode: mode, reason: libbpfErrorText(result) + why + hint)
        }
    }
}

private extension String {
    /// A small /proc file, read whole (its size is not known in advance).
    init?(contentsOfProcFile path: String) throws {
        guard let raw = try? syscall("open(\(path))", { open(path, O_RDONLY | O_CLOEXEC) }) else { return nil }
        let file = FileDescriptor(owning: raw)
        var bytes = [UInt8](repeating: 0, count: 1024)
        let n = DescriptorIO.read(file.rawValue, into: &bytes)
        guard n > 0 else { return nil }
        self = String(decoding: bytes[..<n], as: UTF8.self)
    }
}
