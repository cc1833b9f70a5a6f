import CFerry
import Model
import Packets
import Switching
import Synchronization

/// Which ports' frames the workers copy into their capture rings, and how
/// much of each frame. The control thread writes it when a capture starts or
/// ends; workers read `isActive` with one relaxed load per pass, and the port
/// sets (relaxed loads of their words) only while it is set, so a capture
/// that starts or ends takes effect within one pass and costs nothing
/// otherwise. A worker that still copies a frame a moment after its capture
/// ended only gives the control thread a record no capture wants, which it discards.
public final class CaptureSelection: @unchecked Sendable {
    /// Whether any port is captured at all.
    public let isActive = Atomic<Bool>(false)
    /// Bit p: port p's received frames are captured (`PortSet.wordCount` words).
    @usableFromInline let receiving: UnsafeMutablePointer<UInt64>
    /// Bit p: the frames Ferry hands to port p are captured.
    @usableFromInline let transmitting: UnsafeMutablePointer<UInt64>
    /// The longest snap length among the running captures: workers copy that
    /// much, the control thread cuts each capture's records to its own.
    public let snapLength = Atomic<Int>(CaptureRing.maxSnapLength)

    public init() {
        // SAFETY: each fill covers exactly the wordCount words allocated just before it.
        receiving = .allocate(capacity: PortSet.wordCount)
        receiving.initialize(repeating: 0, count: PortSet.wordCount)
        transmitting = .allocate(capacity: PortSet.wordCount)
        transmitting.initialize(repeating: 0, count: PortSet.wordCount)
    }

    deinit {
        receiving.deallocate()
        transmitting.deallocate()
    }

    /// Sets what is captured: the union of every running capture's ports (their
    /// numbers) and directions.
    public func select(receiving: some Sequence<PortIndex>, transmitting: some Sequence<PortIndex>, snapLength: Int) {
        let rx = PortSet(receiving)
        let tx = PortSet(transmitting)
        // Snap length first: a worker that sees a new port bit copies at least as much as asked.
        self.snapLength.store(snapLength, ordering: .relaxed)
        // SAFETY: both bitmaps hold `PortSet.wordCount` words (init), and w stays below it.
        for w in 0..<PortSet.wordCount {
            ferry_store_relaxed_u64(self.receiving + w, rx.word(w))
            ferry_store_relaxed_u64(self.transmitting + w, tx.word(w))
        }
        isActive.store(!rx.isEmpty || !tx.isEmpty, ordering: .relaxed)
    }

    /// The ports whose received frames are captured, in order (for the control thread).
    public var receivingPorts: [PortIndex] { ports(in: receiving) }
    /// The ports whose transmitted frames are captured, in order.
    public var transmittingPorts: [PortIndex] { ports(in: transmitting) }

    private func ports(in words: UnsafeMutablePointer<UInt64>) -> [PortIndex] {
        // SAFETY: p < PortSet.maxPorts, so p >> 6 < PortSet.wordCount, the bitmap's length.
        return (0..<PortSet.maxPorts).filter { ferry_load_relaxed_u64(words + ($0 >> 6)) & (1 << UInt64($0 & 63)) != 0 }
            .map(PortIndex.init(truncating:))
    }

    /// Copies the selection's words into a worker's `receive` and `transmit`.
    @inlinable
    func load(receive: UnsafeMutablePointer<UInt64>, transmit: UnsafeMutablePointer<UInt64>) {
        // SAFETY: the worker's bitmaps and these hold `PortSet.wordCount` words each.
        for w in 0..<PortSet.wordCount {
            receive[w] = ferry_load_relaxed_u64(receiving + w)
            transmit[w] = ferry_load_relaxed_u64(transmitting + w)
        }
    }
}
