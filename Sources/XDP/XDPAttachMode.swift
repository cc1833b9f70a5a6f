import CBPF

/// How Ferry is asked to attach its XDP program.
public enum XDPAttachRequest: Sendable, Hashable {
    /// Native if the driver supports it, generic otherwise.
    case auto
    /// In the driver (XDP_FLAGS_DRV_MODE): before any skb exists; fails if the driver lacks XDP.
    case native
    /// In the core network stack (XDP_FLAGS_SKB_MODE): any interface, after the skb is built.
    case generic
}

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
