import CBPF
import Glibc
import Logging
import Platform

/// The TAP sender program (bpf/ferry_sender_cpu.bpf.c), loaded once per Ferry
/// and set as the filter of every TAP (`TapDevice.setFilterProgram`): tun runs
/// it for each frame the kernel sends on a TAP, on the sender's CPU, and it
/// writes that CPU into a one-entry map this process maps. A worker woken by a
/// TAP reads it with one load, no syscall (`lastSenderCPU`), and moves there
/// (Engine's `SenderFollowing`; docs/ARCHITECTURE.md, "The worker's wake-up").
public final class SenderCPUProgram: @unchecked Sendable {
    public static let programName = "ferry_sender"
    static let mapName = "ferry_sender_cpu"

    /// What TUNSETFILTEREBPF takes; owned by `object`.
    public let programDescriptor: Int32
    private let object: BPFObject
    /// The map's one value (BPF_F_MMAPABLE: its page, shared with the kernel).
    private let value: MemoryMapping

    private init(object: BPFObject, programDescriptor: Int32, value: MemoryMapping) {
        self.object = object
        self.programDescriptor = programDescriptor
        self.value = value
    }

    /// Loads the program and maps its map; the reason as one line when it cannot
    /// (without CAP_BPF, or on a kernel without mmapable array maps, < 5.5).
    public static func load(logger: Logger) throws(SenderCPUProgramError) -> SenderCPUProgram {
        LibbpfLog.route(to: logger)
        do throws(XDPObjectError) {
            let object = try BPFObject(opening: .ferrySenderCpu)
            try object.load()
            let program = try object.programDescriptor(programName)
            let map = try object.mapDescriptor(mapName)
            let value: MemoryMapping
            do {
                value = try MemoryMapping(fd: map, length: Int(getpagesize()))
            } catch {
                throw XDPObjectError("mmap of map \(mapName)", -error.errno)
            }
            return SenderCPUProgram(object: object, programDescriptor: program, value: value)
        } catch {
            throw SenderCPUProgramError(reason: error.description)
        }
    }

    /// The CPU the last frame into any TAP of this Ferry was sent from; nil before the first.
    public var lastSenderCPU: Int? {
        // SAFETY: `value` maps a whole page and the map's value is its first 4 bytes
        // (an array map lays its values out from offset 0); the mapping lives as long as self.
        // The program writes it concurrently: a torn read is impossible for an aligned
        // 4-byte load, and a stale one only a CPU the worker may move to.
        let slot = value.base.load(as: UInt32.self)
        return slot == 0 ? nil : Int(slot &- 1)
    }
}

/// Why the TAP sender program could not be loaded: the workers then stay where the scheduler puts them.
public struct SenderCPUProgramError: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { "cannot load the TAP sender program: \(reason)" }
}
