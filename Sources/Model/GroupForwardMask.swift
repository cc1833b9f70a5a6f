/// Which IEEE 802.1D link-local group addresses (01:80:C2:00:00:00 to 0F, 802.1D-2004
/// Table 7-10 / 802.1Q-2014 Table 8-1) a port forwards when a frame to one comes in on it.
/// Bit N stands for 01:80:C2:00:00:0N, as in the Linux bridge's per-port `group_fwd_mask`
/// (`bridge link set dev X group_fwd_mask 0x4000`), whose behaviour Ferry follows with STP
/// off (net/bridge/br_input.c, br_handle_frame):
///
/// * 00 (the bridge group address: STP BPDUs) is always forwarded: with no spanning tree of
///   its own, a bridge that swallowed BPDUs would hide a loop from the switches around it;
/// * 01 (802.3 MAC control: PAUSE) is never forwarded, and its bit cannot be set (the kernel
///   refuses it in a port's mask with EINVAL);
/// * every other one (02 slow protocols/LACP, 03 802.1X, 0E LLDP, ...) only when its bit is
///   set. The kernel hands those frames to the bridge's own stack instead; Ferry has none,
///   so it drops them and counts `link_local`.
public struct GroupForwardMask: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// The bits as given (bit 0 may be given; it changes nothing).
    public let bits: UInt16

    /// Forward none of the optional ones: what a Linux bridge port does by default.
    public static let none = GroupForwardMask(uncheckedBits: 0)
    /// 01:80:C2:00:00:01, MAC control (PAUSE): link-local to one wire by definition (802.3 Annex 31B).
    public static let macControlBit: UInt16 = 1 << 1
    /// 01:80:C2:00:00:00, the bridge group address (STP BPDUs).
    public static let bridgeGroupBit: UInt16 = 1 << 0

    private init(uncheckedBits: UInt16) { bits = uncheckedBits }

    /// Why a text is no mask, in words for an error line.
    public struct Invalid: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// `0x4008` (hexadecimal with 0x) or `16392` (decimal), 0...0xffff, bit 1 clear.
    public init(parsing text: String) throws(Invalid) {
        let value: UInt16?
        if text.hasPrefix("0x") || text.hasPrefix("0X") {
            let digits = text.dropFirst(2)
            value = digits.allSatisfy(\.isHexDigit) ? UInt16(digits, radix: 16) : nil
        } else {
            value = text.allSatisfy { $0.isASCII && $0.isNumber } ? UInt16(text) : nil
        }
        guard let value else {
            throw Invalid(description: "group_fwd_mask must be 0x0000...0xffff or 0...65535, not '\(text)'")
        }
        guard value & Self.macControlBit == 0 else {
            throw Invalid(description: "group_fwd_mask must leave bit 1 (0x0002) clear: "
                          + "MAC control frames (PAUSE, 01:80:C2:00:00:01) are never forwarded")
        }
        bits = value
    }

    /// What a frame to 01:80:C2:00:00:0N coming in on the port does: forwarded when bit N is
    /// set here. 00 always, 01 never, the rest as given.
    public var forwarded: UInt16 { (bits | Self.bridgeGroupBit) & ~Self.macControlBit }

    /// `0x4008`, as `--port` and the config file take it.
    public var description: String {
        let hex = String(bits, radix: 16)
        return "0x" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }
}
