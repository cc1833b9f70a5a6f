/// The id of a chain: its head's place in the descriptor table, which the driver puts in
/// an avail entry and the device hands back in a used entry (virtio 1.2 §2.7.6, §2.7.8).
/// Made only by `SplitVirtqueue.head(at:)`, after checking it against the ring's size.
public struct DescriptorIndex: Equatable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16

    @inlinable
    init(checked rawValue: UInt16) { self.rawValue = rawValue }

    public var description: String { String(rawValue) }
}
