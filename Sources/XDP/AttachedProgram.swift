import CBPF
import Glibc
import Platform

/// A program found on an interface's XDP hook before Ferry attaches its own:
/// its id, where it is attached, its name and — when it is a `ferry_steer` —
/// the pid its `ferry_owner` map names.
struct AttachedProgram {
    enum Hook {
        case native
        case generic
        /// Running on the NIC itself; Ferry never offloads, so such a program is never its own.
        case offloaded
    }

    let id: UInt32
    let hook: Hook
    let name: String
    /// The owner's pid; nil unless the program is named `ferry_steer` and has a `ferry_owner` map.
    let ownerPID: Int32?

    /// The programs attached to interface `index` in each mode (at most one
    /// of native and generic: the kernel refuses both at once).
    static func all(onInterface index: UInt32, named interface: String) throws(XDPError) -> [AttachedProgram] {
        let query = try LibbpfOptions.withZeroed(bpf_xdp_query_opts.self) { options throws(XDPError) in
            options.pointee.sz = MemoryLayout<bpf_xdp_query_opts>.size
            let result = bpf_xdp_query(Int32(bitPattern: index), 0, options)
            guard result == 0 else {
                throw .inspectionFailed(interface: interface, reason: "bpf_xdp_query: \(libbpfErrorText(result))")
            }
            return options.pointee
        }
        var found: [AttachedProgram] = []
        for (id, hook) in [(query.drv_prog_id, Hook.native), (query.skb_prog_id, .generic), (query.hw_prog_id, .offloaded)]
        where id != 0 {
            do throws(XDPObjectError) {
                // A program detached since the query is simply no longer there.
                if let program = try inspect(id: id, hook: hook) { found.append(program) }
            } catch {
                throw .inspectionFailed(interface: interface, reason: error.description)
            }
        }
        return found
    }

    /// Reads program `id`'s name and owner; nil if it went away meanwhile.
    private static func inspect(id: UInt32, hook: Hook) throws(XDPObjectError) -> AttachedProgram? {
        let raw = bpf_prog_get_fd_by_id(id)
        if raw == -ENOENT { return nil }
        guard raw >= 0 else { throw XDPObjectError("bpf_prog_get_fd_by_id(\(id))", raw) }
        let program = FileDescriptor(owning: raw)
        let info = try programInfo(program.rawValue)
        let name = cString(info.name)
        guard name == SteeringProgram.programName else {
            return AttachedProgram(id: id, hook: hook, name: name, ownerPID: nil)
        }
        return AttachedProgram(id: id, hook: hook, name: name,
                               ownerPID: try ownerPID(ofProgram: program.rawValue, mapCount: info.nr_map_ids))
    }

    /// The kernel's id for a loaded program.
    static func id(ofProgram fd: Int32) throws(XDPObjectError) -> UInt32 {
        try programInfo(fd).id
    }

    private static func programInfo(_ fd: Int32) throws(XDPObjectError) -> bpf_prog_info {
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        // libbpf 1.1 has no bpf_prog_get_info_by_fd (1.2 added it); this is the same call.
        let result = bpf_obj_get_info_by_fd(fd, &info, &length)
        guard result == 0 else { throw XDPObjectError("bpf_obj_get_info_by_fd(program)", result) }
        return info
    }

    /// Finds the program's map named `ferry_owner` among its map ids and reads index 0.
    private static func ownerPID(ofProgram fd: Int32, mapCount: UInt32) throws(XDPObjectError) -> Int32? {
        var mapIDs = [UInt32](repeating: 0, count: Int(mapCount))
        let result = mapIDs.withUnsafeMutableBufferPointer { ids in
            var info = bpf_prog_info()
            info.nr_map_ids = mapCount
            info.map_ids = UInt64(UInt(bitPattern: ids.baseAddress))
            var length = UInt32(MemoryLayout<bpf_prog_info>.size)
            return bpf_obj_get_info_by_fd(fd, &info, &length)
        }
        guard result == 0 else { throw XDPObjectError("bpf_obj_get_info_by_fd(program, map ids)", result) }
        for mapID in mapIDs {
            let raw = bpf_map_get_fd_by_id(mapID)
            if raw == -ENOENT { continue }
            guard raw >= 0 else { throw XDPObjectError("bpf_map_get_fd_by_id(\(mapID))", raw) }
            let map = FileDescriptor(owning: raw)
            var info = bpf_map_info()
            var length = UInt32(MemoryLayout<bpf_map_info>.size)
            let infoResult = bpf_obj_get_info_by_fd(map.rawValue, &info, &length)
            guard infoResult == 0 else { throw XDPObjectError("bpf_obj_get_info_by_fd(map \(mapID))", infoResult) }
            guard cString(info.name) == SteeringMaps.ownerName else { continue }
            var key: UInt32 = 0
            var pid: UInt32 = 0
            let lookup = bpf_map_lookup_elem(map.rawValue, &key, &pid)
            guard lookup == 0 else { throw XDPObjectError("bpf_map_lookup_elem(\(SteeringMaps.ownerName))", lookup) }
            return Int32(bitPattern: pid)
        }
        return nil
    }

    /// A NUL-terminated name from a fixed kernel array (BPF_OBJ_NAME_LEN).
    private static func cString<T>(_ array: T) -> String {
        withUnsafeBytes(of: array) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
    }
}
