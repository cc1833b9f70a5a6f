import CBPF

/// libbpf's text for an error it returned (negative or positive errno, or
/// one of its own LIBBPF_ERRNO__ codes), with the number for searching.
func libbpfErrorText(_ code: Int32) -> String {
    let positive = code < 0 ? -code : code
    var buffer = [CChar](repeating: 0, count: 256)
    _ = libbpf_strerror(positive, &buffer, buffer.count)
    let text = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return "\(text) (errno \(positive))"
}
