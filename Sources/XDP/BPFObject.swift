import CBPF
import Glibc

/// A libbpf `bpf_object` opened from memory, and that memory: libbpf reads
/// the ELF image in place until the object is loaded, so the bytes must not
/// move or go away before `close`. Closing the object closes its program and
/// map descriptors; an XDP program attached through netlink stays attached.
final class BPFObject {
    private let handle: OpaquePointer
    private let image: UnsafeMutableRawBufferPointer

    /// Opens `embedded` (parses the ELF, reads BTF and map definitions); nothing reaches the kernel yet.
    init(opening embedded: EmbeddedBPFObject) throws(XDPObjectError) {
        let bytes = embedded.bytes
        let image = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 8)
        image.copyBytes(from: bytes)
        let opened: OpaquePointer? = embedded.name.withCString { name in
            var options = bpf_object_open_opts()
            options.sz = MemoryLayout<bpf_object_open_opts>.size
            options.object_name = name
            return bpf_object__open_mem(image.baseAddress, image.count, &options)
        }
        guard let opened else {
            let code = errno
            image.deallocate()
            throw XDPObjectError("bpf_object__open_mem(\(embedded.name))", code)
        }
        handle = opened
        self.image = image
    }

    deinit {
        bpf_object__close(handle)
        image.deallocate()
    }

    /// Sets a map's size; only before `load`.
    func setMaxEntries(map name: String, _ count: UInt32) throws(XDPObjectError) {
        guard let map = bpf_object__find_map_by_name(handle, name) else {
            throw XDPObjectError("no map \(name) in the object", ENOENT)
        }
        let result = bpf_map__set_max_entries(map, count)
        guard result == 0 else { throw XDPObjectError("bpf_map__set_max_entries(\(name), \(count))", result) }
    }

    /// Creates the maps and loads the programs into the kernel (the verifier runs here).
    func load() throws(XDPObjectError) {
        let result = bpf_object__load(handle)
        guard result == 0 else { throw XDPObjectError("bpf_object__load", result) }
    }

    /// A loaded map's descriptor, owned by the object.
    func mapDescriptor(_ name: String) throws(XDPObjectError) -> Int32 {
        try descriptor(of: bpf_object__find_map_by_name(handle, name), "map \(name)", bpf_map__fd)
    }

    /// A loaded program's descriptor, owned by the object.
    func programDescriptor(_ name: String) throws(XDPObjectError) -> Int32 {
        try descriptor(of: bpf_object__find_program_by_name(handle, name), "program \(name)", bpf_program__fd)
    }

    private func descriptor(of item: OpaquePointer?, _ what: String,
                            _ descriptorOf: (OpaquePointer) -> Int32) throws(XDPObjectError) -> Int32 {
        guard let item else { throw XDPObjectError("no \(what) in the object", ENOENT) }
        let fd = descriptorOf(item)
        guard fd >= 0 else { throw XDPObjectError("descriptor of \(what)", fd) }
        return fd
    }
}

/// A libbpf call that failed while preparing the object; becomes `XDPError.loadFailed`.
struct XDPObjectError: Error, CustomStringConvertible {
    let call: String
    let code: Int32

    init(_ call: String, _ code: Int32) {
        self.call = call
        self.code = code
    }

    var description: String { "\(call): \(libbpfErrorText(code))" }
}
