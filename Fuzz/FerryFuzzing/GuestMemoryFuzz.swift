import Platform
import Virtio

/// The memory table and address translation, on real memfds: a table of up to eight regions
/// (SET_MEM_TABLE), then ADD_MEM_REG, REM_MEM_REG and translations of guest-physical and
/// front-end addresses, each compared with a plain model of the table.
///
/// Input: a region count, the regions ([file byte] [gpa] [size] [front-end address] [offset],
/// each address drawn near the previous region's end so that neighbours abut), then operations
/// [op byte] [its operands] until the input ends.
///
/// Checked: the table is accepted exactly when the model says it is valid; a translation returns
/// a pointer exactly when the model finds the range in one region (or its first piece), and the
/// pointer reads the file's bytes at the model's offset — so translation is right, not just in bounds.
public enum GuestMemoryFuzz {
    public static let target = FuzzTarget(name: "guest-memory", run: { run($0) }, seeds: { seeds() })

    /// The memory files regions map: a few sizes, each filled with `pattern` once.
    static let files: [SharedMemory] = {
        [0x1_0000, 0x1_0000, 0x4000, 0x1000].enumerated().map { index, size in
            let file = try! SharedMemory(length: size, name: "ferry-fuzz-memory")
            for offset in 0..<size { file.base.storeBytes(of: pattern(file: index, offset: UInt64(offset)), toByteOffset: offset, as: UInt8.self) }
            return file
        }
    }()

    /// The byte at `offset` of file `file`: neighbouring offsets and files differ.
    static func pattern(file: Int, offset: UInt64) -> UInt8 {
        UInt8(truncatingIfNeeded: offset &* 7 &+ (offset >> 8) &+ UInt64(file) &* 61)
    }

    /// The model's view of one region.
    struct Region {
        var info: GuestMemoryRegionInfo
        var file: Int

        var guestEnd: UInt64 { info.guestPhysicalAddress &+ info.size }
        var frontEndEnd: UInt64 { info.frontEndAddress &+ info.size }
    }

    public static func run(_ bytes: UnsafeRawBufferPointer) -> FuzzOutcome {
        var input = FuzzInput(bytes)
        var outcome = FuzzOutcome()
        var model: [Region] = []
        for _ in 0..<Int(input.byte() % 9) { model.append(region(&input, after: model.last)) }
        var memory = attempt(model, &outcome) { () throws(GuestMemoryError) in
            try GuestMemory(regions: model.map(\.info), fds: model.map { files[$0.file].fd.rawValue })
        }
        if memory == nil { model = [] }
        while let current = memory, !input.isExhausted {
            let near = model[input.below(model.count)]
            switch input.byte() % 6 {
            case 0: checkTranslation(current, model, GuestAddress(input.address(near: near.info.guestPhysicalAddress)),
                                     length: input.uint32() % 0x2_0000, &outcome)
            case 1: checkPiece(current, model, GuestAddress(input.address(near: near.info.guestPhysicalAddress)),
                               length: input.uint32(), &outcome)
            case 2: checkTranslation(current, model, FrontEndAddress(input.address(near: near.info.frontEndAddress)),
                                     length: input.address(near: 0), &outcome)
            case 3: checkGuestAddress(current, model, FrontEndAddress(input.address(near: near.info.frontEndAddress)))
            case 4:
                let added = region(&input, after: model.last)
                if let grown = attempt(model + [added], &outcome, { () throws(GuestMemoryError) in
                    try current.adding(added.info, fd: files[added.file].fd.rawValue)
                }) {
                    memory = grown
                    model.append(added)
                }
            default:
                let size = input.bool() ? near.info.size : input.address(near: near.info.size)
                memory = remove(current, &model, guestPhysicalAddress: near.info.guestPhysicalAddress, size: size, &outcome)
            }
        }
        return outcome
    }

    static func region(_ input: inout FuzzInput, after previous: Region?) -> Region {
        let file = Int(input.byte()) % files.count
        let gpa = input.address(near: previous?.guestEnd ?? 0x4000_0000)
        let size = input.address(near: UInt64(files[file].length) / 2)
        let frontEnd = input.address(near: previous?.frontEndEnd ?? 0x7f00_0000_0000)
        let offset = input.address(near: 0)
        return Region(info: GuestMemoryRegionInfo(guestPhysicalAddress: gpa, size: size, frontEndAddress: frontEnd,
                                                  mmapOffset: offset), file: file)
    }

    /// Whether `GuestMemory` must accept this table: every region non-empty, not wrapping, inside
    /// its file, and no two overlapping in either address space.
    static func isValid(_ table: [Region]) -> Bool {
        guard !table.isEmpty, table.count <= GuestMemory.maxRegions else { return false }
        for r in table {
            let (_, gpaWraps) = r.info.guestPhysicalAddress.addingReportingOverflow(r.info.size)
            let (_, frontEndWraps) = r.info.frontEndAddress.addingReportingOverflow(r.info.size)
            let (fileEnd, fileWraps) = r.info.mmapOffset.addingReportingOverflow(r.info.size)
            guard r.info.size > 0, !gpaWraps, !frontEndWraps, !fileWraps,
                  fileEnd <= UInt64(files[r.file].length) else { return false }
        }
        for (i, a) in table.enumerated() {
            for b in table[..<i] {
                if a.info.guestPhysicalAddress < b.guestEnd && b.info.guestPhysicalAddress < a.guestEnd { return false }
                if a.info.frontEndAddress < b.frontEndEnd && b.info.frontEndAddress < a.frontEndEnd { return false }
            }
        }
        return true
    }

    /// Builds a table and checks that it was accepted exactly when the model says it is valid.
    static func attempt(_ table: [Region], _ outcome: inout FuzzOutcome,
                        _ build: () throws(GuestMemoryError) -> GuestMemory) -> GuestMemory? {
        let valid = isValid(table)
        do throws(GuestMemoryError) {
            let memory = try build()
            fuzzCheck(valid, "accepted an invalid table \(table.map(\.info))")
            fuzzCheck(memory.regions == table.map(\.info), "the table reads back as \(memory.regions)")
            outcome.accepted += 1
            return memory
        } catch {
            fuzzCheck(!valid, "refused a valid table \(table.map(\.info)): \(error)")
            outcome.refused += 1
            return nil
        }
    }

    static func remove(_ memory: GuestMemory, _ model: inout [Region], guestPhysicalAddress: UInt64, size: UInt64,
                       _ outcome: inout FuzzOutcome) -> GuestMemory? {
        let index = model.firstIndex { $0.info.guestPhysicalAddress == guestPhysicalAddress && $0.info.size == size }
        do throws(GuestMemoryError) {
            let smaller = try memory.removing(guestPhysicalAddress: guestPhysicalAddress, size: size)
            guard let index else {
                fuzzCheck(false, "removed a region the table does not have")
                return nil
            }
            model.remove(at: index)
            fuzzCheck((smaller == nil) == model.isEmpty, "removing left \(smaller?.regions.count ?? 0) regions, model \(model.count)")
            outcome.accepted += 1
            return smaller
        } catch {
            fuzzCheck(index == nil, "refused to remove region \(guestPhysicalAddress) of size \(size): \(error)")
            outcome.refused += 1
            return memory
        }
    }

    /// Checks a host pointer against the model's file and offset at both ends of the range.
    static func checkBytes(_ pointer: UnsafeMutableRawPointer, region: Region, offsetInRegion: UInt64, length: UInt64) {
        guard length > 0 else { return }
        let fileOffset = region.info.mmapOffset + offsetInRegion
        fuzzCheck(pointer.load(as: UInt8.self) == pattern(file: region.file, offset: fileOffset),
                  "translation of region offset \(offsetInRegion) reads the wrong byte")
        fuzzCheck(pointer.load(fromByteOffset: Int(length - 1), as: UInt8.self)
                    == pattern(file: region.file, offset: fileOffset + length - 1),
                  "translation of region offset \(offsetInRegion)+\(length) ends on the wrong byte")
    }

    static func checkTranslation(_ memory: GuestMemory, _ model: [Region], _ address: GuestAddress, length: UInt32,
                                 _ outcome: inout FuzzOutcome) {
        let start = address.rawValue
        let (end, wraps) = start.addingReportingOverflow(UInt64(length))
        let holder = wraps ? nil : model.first { start >= $0.info.guestPhysicalAddress && end <= $0.guestEnd }
        let pointer = memory.translate(address, length: length)
        fuzzCheck((pointer == nil) == (holder == nil), "\(address)+\(length): translated \(pointer != nil), model \(holder != nil)")
        guard let pointer, let holder else { outcome.refused += 1; return }
        checkBytes(pointer, region: holder, offsetInRegion: start - holder.info.guestPhysicalAddress, length: UInt64(length))
        outcome.accepted += 1
    }

    static func checkTranslation(_ memory: GuestMemory, _ model: [Region], _ address: FrontEndAddress, length: UInt64,
                                 _ outcome: inout FuzzOutcome) {
        let start = address.rawValue
        let (end, wraps) = start.addingReportingOverflow(length)
        let holder = wraps ? nil : model.first { start >= $0.info.frontEndAddress && end <= $0.frontEndEnd }
        let pointer = memory.translate(address, length: length)
        fuzzCheck((pointer == nil) == (holder == nil), "\(address)+\(length): translated \(pointer != nil), model \(holder != nil)")
        guard let pointer, let holder else { outcome.refused += 1; return }
        checkBytes(pointer, region: holder, offsetInRegion: start - holder.info.frontEndAddress, length: length)
        outcome.accepted += 1
    }

    static func checkPiece(_ memory: GuestMemory, _ model: [Region], _ address: GuestAddress, length: UInt32,
                           _ outcome: inout FuzzOutcome) {
        let start = address.rawValue
        let (_, wraps) = start.addingReportingOverflow(UInt64(length))
        let holder = wraps ? nil : model.first { start >= $0.info.guestPhysicalAddress && start < $0.guestEnd }
        let piece = memory.translatePiece(address, length: length)
        fuzzCheck((piece == nil) == (holder == nil), "\(address)+\(length): a piece \(piece != nil), model \(holder != nil)")
        guard let (pointer, pieceLength) = piece, let holder else { outcome.refused += 1; return }
        let expected = min(UInt64(length), holder.guestEnd - start)
        fuzzCheck(UInt64(pieceLength) == expected, "\(address)+\(length): piece of \(pieceLength), model \(expected)")
        checkBytes(pointer, region: holder, offsetInRegion: start - holder.info.guestPhysicalAddress, length: expected)
        outcome.accepted += 1
    }

    static func checkGuestAddress(_ memory: GuestMemory, _ model: [Region], _ address: FrontEndAddress) {
        let holder = model.first { address.rawValue >= $0.info.frontEndAddress && address.rawValue < $0.frontEndEnd }
        let expected = holder.map { GuestAddress($0.info.guestPhysicalAddress + (address.rawValue - $0.info.frontEndAddress)) }
        fuzzCheck(memory.guestAddress(of: address) == expected, "\(address) maps to \(String(describing: memory.guestAddress(of: address)))")
    }

    // MARK: - Seeds

    static func regionBytes(file: UInt8, gpa: UInt64, size: UInt64, frontEnd: UInt64, offset: UInt64) -> [UInt8] {
        var builder = FuzzInputBuilder()
        builder.byte(file)
        for value in [gpa, size, frontEnd, offset] { builder.address(value) }
        return builder.bytes
    }

    static func seeds() -> [(name: String, bytes: [UInt8])] {
        // QEMU's usual split: low memory, then the rest, from one file at two offsets.
        var twoRegions = FuzzInputBuilder()
        twoRegions.byte(2)
        twoRegions.raw(regionBytes(file: 0, gpa: 0x4000_0000, size: 0x8000, frontEnd: 0x7f00_0000_0000, offset: 0))
        twoRegions.raw(regionBytes(file: 0, gpa: 0x4000_8000, size: 0x8000, frontEnd: 0x7e00_0000_0000, offset: 0x8000))
        var translations = twoRegions
        for op: UInt8 in 0...3 {
            translations.below(op == 3 ? 1 : 0)
            translations.byte(op)
            translations.address(0x4000_7ff0)
            if op == 3 { continue }
            if op == 2 { translations.address(0x20) } else { translations.uint32(0x20) }
        }
        var addRemove = twoRegions
        addRemove.below(1)
        addRemove.byte(4)
        addRemove.raw(regionBytes(file: 2, gpa: 0x8000_0000, size: 0x4000, frontEnd: 0x7d00_0000_0000, offset: 0))
        addRemove.below(0)
        addRemove.byte(5)
        addRemove.bool(true)
        var overlapping = FuzzInputBuilder()
        overlapping.byte(2)
        overlapping.raw(regionBytes(file: 1, gpa: 0x1000, size: 0x2000, frontEnd: 0x10_0000, offset: 0))
        overlapping.raw(regionBytes(file: 1, gpa: 0x2000, size: 0x2000, frontEnd: 0x20_0000, offset: 0))
        return [("two-regions", twoRegions.bytes), ("translations", translations.bytes), ("add-remove", addRemove.bytes),
                ("overlapping", overlapping.bytes)]
    }
}
