import Model

/// Where one frame of a burst goes, in the worker's per-frame scratch: one
/// port, a VLAN's flood (every member but the ingress port, which is the same
/// for the whole burst), or nowhere. Four bytes whatever the number of ports:
/// the set of ports a burst reaches is gathered only when it has several
/// (`Worker.switchBurst`).
public struct FrameDestination: Equatable, Sendable {
    public let rawValue: UInt32

    @inlinable init(rawValue: UInt32) { self.rawValue = rawValue }

    @usableFromInline static let portFlag: UInt32 = 1 << 16
    @usableFromInline static let floodFlag: UInt32 = 1 << 17

    /// Dropped (and counted where it was decided).
    public static let nowhere = FrameDestination(rawValue: 0)

    @inlinable static func port(_ p: PortIndex) -> FrameDestination { FrameDestination(rawValue: portFlag | UInt32(p.rawValue)) }

    @inlinable static func flood(vlan: UInt16) -> FrameDestination {
        FrameDestination(rawValue: floodFlag | UInt32(vlan))
    }

    /// The one port's position in a table indexed by port number, for a frame that goes to one port.
    @inlinable var port: Int? { rawValue & Self.portFlag != 0 ? Int(rawValue & 0xFFFF) : nil }

    @inlinable var isFlood: Bool { rawValue & Self.floodFlag != 0 }

    /// The VLAN of a flood.
    @inlinable var vlan: UInt16 { UInt16(truncatingIfNeeded: rawValue) }
}
