/// How Ferry is asked to attach its XDP program.
public enum XDPAttachRequest: Sendable, Hashable {
    /// Native if the driver supports it, generic otherwise.
    case auto
    /// In the driver (XDP_FLAGS_DRV_MODE): before any skb exists; fails if the driver lacks XDP.
    case native
    /// In the core network stack (XDP_FLAGS_SKB_MODE): any interface, after the skb is built.
    case generic
}
