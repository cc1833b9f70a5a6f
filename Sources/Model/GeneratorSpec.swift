/// What a generator port sends: a plain value, parsed from `gen:` (docs/CONFIG.md) and
/// turned into frames by `GenPort`.
public struct GeneratorSpec: Equatable, Sendable {
    /// How fast frames go out.
    public enum Rate: Equatable, Sendable {
        /// As fast as the destinations take them: the generator waits for room, so `count=N`
        /// means N frames delivered.
        case unlimited
        case framesPerSecond(Double)
        /// Bits of the frames as Ferry counts them (no preamble, inter-frame gap or FCS),
        /// turned into frames per second by the pattern's mean size.
        case bitsPerSecond(Double)
    }

    /// The sizes of frames in the order they repeat.
    public enum Sizes: Equatable, Sendable {
        case fixed(Int)
        case list([Int])
        /// 7 : 4 : 1 frames of 64, 570 and 1518 bytes, the simple IMIX.
        case imix

        public static let imixPattern = [64, 64, 570, 64, 64, 570, 64, 64, 570, 64, 570, 1518]

        public var pattern: [Int] {
            switch self {
            case .fixed(let size): [size]
            case .list(let sizes): sizes
            case .imix: Self.imixPattern
            }
        }
    }

    public static var sizes: ClosedRange<Int> { PortLimits.genFrameSizes }
    public static let flowLimit = 4096
    public static let burstLimit = 4096
    /// The most frames the pool holds: flows × sizes beyond it are refused.
    public static let poolLimit = 65536

    public var destination: MACAddress
    public var source: MACAddress
    public var sizes: Sizes
    /// Frames to send, then stop; nil: forever.
    public var count: UInt64?
    public var delayMilliseconds: Int
    public var rate: Rate
    /// Frames sent back to back when a rate is set: they leave in bursts of this many.
    public var burst: Int
    /// Flow `k` has source MAC `source + k × 256`, IPv4 198.18.0.1 + k → 198.19.0.1 + k, UDP 1024 + k → 1025.
    public var flows: Int
    /// The 802.1Q tag every frame carries, nil for untagged frames.
    public var tag: UInt16?
    /// Each frame's UDP payload carries a `LabStamp`: flow, sequence number, send time.
    public var stamped: Bool
    /// What a generator with a rate does when a destination is full (`full=`): drop what it
    /// cannot take, as a generator on a wire does (false, the default), or wait for room and
    /// catch up, as one that honours flow control does (true). Without a rate it always waits.
    public var waitsWhenFull: Bool

    public init(destination: MACAddress = MACAddress(2, 0, 0, 0, 0, 2), source: MACAddress = MACAddress(2, 0, 0, 0, 0, 1),
                sizes: Sizes = .fixed(64), count: UInt64? = nil, delayMilliseconds: Int = 0, rate: Rate = .unlimited,
                burst: Int = 32, flows: Int = 1, tag: UInt16? = nil, stamped: Bool = true, waitsWhenFull: Bool = false) {
        self.destination = destination
        self.source = source
        self.sizes = sizes
        self.count = count
        self.delayMilliseconds = delayMilliseconds
        self.rate = rate
        self.burst = burst
        self.flows = flows
        self.tag = tag
        self.stamped = stamped
        self.waitsWhenFull = waitsWhenFull
    }

    /// Mean frame size over the repeating pattern, in bytes.
    public var meanFrameSize: Double {
        let pattern = sizes.pattern
        return Double(pattern.reduce(0, +)) / Double(pattern.count)
    }

    /// The rate in frames per second; nil when unlimited.
    public var framesPerSecond: Double? {
        switch rate {
        case .unlimited: nil
        case .framesPerSecond(let r): r
        case .bitsPerSecond(let r): r / (8 * meanFrameSize)
        }
    }

    /// Whether `destination` is one of the flows' source addresses (its frames would come back
    /// to the generator's own port).
    public var destinationIsAFlowSource: Bool {
        let d = destination.array, s = source.array
        guard d[5] == s[5] else { return false }
        func value(_ b: [UInt8]) -> Int { b[0..<5].reduce(0) { $0 << 8 | Int($1) } }
        let k = value(d) - value(s)
        return k >= 0 && k < flows
    }

    /// The smallest frame that holds the headers (Ethernet, the tag, IPv4, UDP) and the
    /// stamp (16 bytes, `LabStamp`).
    public var smallestFrame: Int { 14 + (tag != nil ? 4 : 0) + 20 + 8 + (stamped ? 16 : 0) }
}
