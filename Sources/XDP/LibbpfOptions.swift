/// libbpf's `*_opts` structs on zeroed memory. libbpf refuses an opts struct with a
/// non-zero byte past the last field it knows (libbpf_validate_opts: "has non-zero
/// extra bytes", EINVAL), and a struct's tail padding is such bytes. Swift's `T()`
/// sets every field but leaves padding as the stack had it, so `bpf_xdp_query` and
/// `bpf_xdp_attach` failed at random (seen: 4 attaches in 7 on a veth).
enum LibbpfOptions {
    /// Runs `body` with a `T` whose every byte, padding included, is zero; set fields
    /// through the pointer (a field store leaves the padding alone).
    static func withZeroed<T, R, E: Error>(_ type: T.Type, _ body: (UnsafeMutablePointer<T>) throws(E) -> R) throws(E) -> R {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<T>.size, alignment: MemoryLayout<T>.alignment)
        defer { memory.deallocate() }
        // SAFETY: T is an imported C struct of integers, for which all-zero bytes are a valid value.
        let options = memory.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<T>.size)
        return try body(UnsafeMutableRawPointer(options).assumingMemoryBound(to: T.self))
    }
}
