import Model

/// A set of switch ports as a bitmap: bit n of word n / 64 is port n. It is a
/// value of fixed size (no storage on the heap), so building one allocates
/// nothing; the data path never builds one per frame, though: a frame's
/// destination is one port or a VLAN's flood (`Forwarder`), and only a burst
/// whose frames go to several ports gathers them into a set (`Worker`).
public struct PortSet: Hashable, Sendable, Sequence, CustomStringConvertible {
    /// 64-bit words in a set: the `16` of `words`' type.
    public static let wordCount = 16
    /// The most ports a switch has (and the most numbers `Switch` gives out).
    public static let maxPorts = 64 * wordCount

    @usableFromInline var words: InlineArray<16, UInt64>

    @inlinable public init() { words = InlineArray(repeating: 0) }

    public init(_ ports: some Sequence<PortIndex>) {
        self.init()
        for p in ports { insert(p) }
    }

    public static let empty = PortSet()

    /// The set's word `w` (ports `64 * w` to `64 * w + 63`).
    @inlinable public func word(_ w: Int) -> UInt64 { words[w] }

    @inlinable
    public func contains(_ port: PortIndex) -> Bool {
        let p = port.rawValue
        return p < Self.maxPorts && words[Int(p &>> 6)] & (1 &<< UInt64(p & 63)) != 0
    }

    /// Ports past `maxPorts` are a bug of ours: the switch refuses to create them.
    @inlinable
    public mutating func insert(_ port: PortIndex) {
        let p = port.rawValue
        precondition(p < Self.maxPorts, "port index beyond PortSet.maxPorts")
        words[Int(p &>> 6)] |= 1 &<< UInt64(p & 63)
    }

    @inlinable
    public mutating func remove(_ port: PortIndex) {
        let p = port.rawValue
        if p < Self.maxPorts { words[Int(p &>> 6)] &= ~(1 &<< UInt64(p & 63)) }
    }

    @inlinable
    public func removing(_ port: PortIndex) -> PortSet {
        var s = self
        s.remove(port)
        return s
    }

    @inlinable
    public var count: Int {
        var n = 0
        for w in 0..<Self.wordCount { n &+= words[w].nonzeroBitCount }
        return n
    }

    @inlinable
    public var isEmpty: Bool {
        for w in 0..<Self.wordCount where words[w] != 0 { return false }
        return true
    }

    /// The lowest port in the set, if any.
    @inlinable
    public var first: PortIndex? {
        for w in 0..<Self.wordCount where words[w] != 0 {
            return PortIndex(truncating: w &* 64 &+ words[w].trailingZeroBitCount)
        }
        return nil
    }

    /// One more than the highest port in the set, rounded up to a whole word:
    /// how many words a reader must look at. 0 for the empty set.
    @inlinable
    public var wordsInUse: Int {
        var w = Self.wordCount
        while w > 0 && words[w &- 1] == 0 { w &-= 1 }
        return w
    }

    public static func == (a: PortSet, b: PortSet) -> Bool {
        for w in 0..<wordCount where a.words[w] != b.words[w] { return false }
        return true
    }

    public func hash(into hasher: inout Hasher) {
        for w in 0..<Self.wordCount { hasher.combine(words[w]) }
    }

    public struct Iterator: IteratorProtocol {
        @usableFromInline let set: PortSet
        @usableFromInline var word: Int
        @usableFromInline var rest: UInt64

        @inlinable init(_ set: PortSet) {
            self.set = set
            word = 0
            rest = set.words[0]
        }

        @inlinable
        public mutating func next() -> PortIndex? {
            while rest == 0 {
                word &+= 1
                guard word < PortSet.wordCount else { return nil }
                rest = set.words[word]
            }
            let port = PortIndex(truncating: word &* 64 &+ rest.trailingZeroBitCount)
            rest &= rest &- 1
            return port
        }
    }

    @inlinable public func makeIterator() -> Iterator { Iterator(self) }

    public var description: String { "[" + map(\.description).joined(separator: ",") + "]" }
}
