/// A list of CPUs as `--cpus` and the config file write it: "0,2-3" → [0, 2, 3].
public enum CPUList {
    /// The highest CPU number taken; CONFIG_NR_CPUS tops out at 4096 on x86_64.
    public static let numbers = 0...4095

    /// The CPUs, or the item that is no CPU number or range.
    public static func parse(_ text: String) -> Result<[Int], Invalid> {
        var cpus: [Int] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = item.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count), let low = Int(bounds[0]), let high = Int(bounds[bounds.count - 1]),
                  numbers.contains(low), numbers.contains(high), low <= high else {
                return .failure(Invalid(item: String(item)))
            }
            cpus += Array(low...high)
        }
        return .success(cpus)
    }

    public struct Invalid: Error, Equatable {
        public let item: String
        public var description: String { "'\(item)' is not a CPU number or range (e.g. 0,2-3)" }
    }
}
