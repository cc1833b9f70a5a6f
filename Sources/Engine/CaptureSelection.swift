import Packets
import Synchronization

/// Which ports' frames the workers copy into their capture rings, and how
/// much of each frame. The control thread writes it when a capture starts or
/// ends; workers read it with relaxed loads once per pass, so a capture that
/// starts or ends takes effect within one pass and costs nothing otherwise.
/// A worker that still copies a frame a moment after its capture ended only
/// gives the control thread a record no capture wants, which it discards.
public final class CaptureSelection: @unchecked Sendable {
    /// Bit p: port p's received frames are captured.
    public let receiving = Atomic<UInt64>(0)
    /// Bit p: the frames Ferry hands to port p are captured.
    public let transmitting = Atomic<UInt64>(0)
    /// The longest snap length among the running captures: workers copy that
    /// much, the control thread cuts each capture's records to its own.
    public let snapLength = Atomic<Int>(CaptureRing.maxSnapLength)

    public init() {}

    /// Sets what is captured: the union of every running capture's ports and directions.
    public func select(receiving rx: UInt64, transmitting tx: UInt64, snapLength: Int) {
        // Snap length first: a worker that sees a new port bit copies at least as much as asked.
        self.snapLength.store(snapLength, ordering: .relaxed)
        receiving.store(rx, ordering: .relaxed)
        transmitting.store(tx, ordering: .relaxed)
    }
}
