import CBPF

/// The libbpf Ferry runs with (the shared library's, which may be newer than the
/// headers it was built against), for `ferry version` and bug reports.
public enum LibbpfVersion {
    public static var string: String {
        guard let text = libbpf_version_string() else { return "\(libbpf_major_version()).\(libbpf_minor_version())" }
        return String(cString: text)
    }
}
