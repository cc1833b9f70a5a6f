/// Offload work counted per port queue, on the port frames were handed to.
public enum OffloadCounter: Int, CaseIterable, Sendable {
    /// GSO super-frames handed over whole (the destination segments, or takes them as they are).
    case gsoPassed
    /// GSO super-frames Ferry segmented in software for the port.
    case segmentedFrames
    /// The segments those became.
    case segmentsOut
    /// Partial checksums (NEEDS_CSUM) Ferry finished in software for the port.
    case checksumsCompleted

    /// The name used in stats output and metrics.
    public var name: String {
        switch self {
        case .gsoPassed: "gso_passed"
        case .segmentedFrames: "segmented_frames"
        case .segmentsOut: "segments_out"
        case .checksumsCompleted: "checksums_completed"
        }
    }
}
