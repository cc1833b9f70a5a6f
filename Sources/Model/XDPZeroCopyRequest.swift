/// What the user asked for zero-copy on an xdp port (`zerocopy=`).
public enum XDPZeroCopyRequest: String, Sendable {
    case auto, on, off
}
