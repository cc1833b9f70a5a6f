import Glibc

/// What uname(2) says about the running kernel, as text (`ferry version`).
public struct SystemName: Sendable {
    public let system: String
    public let release: String
    public let machine: String

    public static func current() -> SystemName {
        var name = utsname()
        uname(&name)
        return SystemName(system: text(name.sysname), release: text(name.release), machine: text(name.machine))
    }

    /// A fixed-size C character array, up to its first NUL.
    private static func text<Field>(_ field: Field) -> String {
        withUnsafeBytes(of: field) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}
