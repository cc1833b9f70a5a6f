import CBPF

/// How a program is attached to an interface.
public enum XDPAttachMode: Sendable, Hashable, CustomStringConvertible {
    case native
    case generic

    /// The mode flag of <linux/if_link.h> for bpf_xdp_attach.
    var flags: UInt32 {
        switch self {
        case .native: UInt32(XDP_FLAGS_DRV_MODE)
        case .generic: UInt32(XDP_FLAGS_SKB_MODE)
        }
    }

    public var description: String {
        switch self {
        case .native: "native"
        case .generic: "generic"
        }
    }
}
