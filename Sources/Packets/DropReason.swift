/// Why a frame was dropped. Every drop is counted under one of these, on the
/// port (and queue) where it happened.
public enum DropReason: Int, CaseIterable, Sendable {
    /// The guest had posted no RX buffer for the frame.
    case noRxBuffer
    /// Without mergeable RX buffers, the guest's buffer was smaller than the frame.
    case rxBufferTooSmall
    /// The device was marked broken (a hostile or buggy guest); it forwards nothing until reset.
    case deviceBroken
    /// The port's front-end is not connected or its rings are not running yet.
    case notReady
    /// A TX chain had more segments than a batch holds.
    case tooManySegments
    /// A TX frame was shorter than the virtio-net header plus an Ethernet header.
    case runt

    /// The name used in stats output and metrics labels.
    public var name: String {
        switch self {
        case .noRxBuffer: "no_rx_buffer"
        case .rxBufferTooSmall: "rx_buffer_too_small"
        case .deviceBroken: "device_broken"
        case .notReady: "not_ready"
        case .tooManySegments: "too_many_segments"
        case .runt: "runt"
        }
    }
}
