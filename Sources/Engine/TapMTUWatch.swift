import Ports

/// Keeps each TAP's `maxFrameLength` in step with its MTU, which anyone may
/// change with `ip link set mtu`: the direct TAP → guest path offers only
/// guest buffers that hold the longest frame (Worker+Direct.swift). Asks once
/// a second; for that long after a raise, a longer frame that meets a buffer
/// sized for the old MTU is dropped as `rx_buffer_too_small`.
final class TapMTUWatch: ControlLoopClient {
    static let interval = 1.0
    let taps: [TapPort]
    private var last = -Double.infinity

    init(taps: [TapPort]) { self.taps = taps }

    var pollDescriptors: [Int32] { [] }
    func timeout(now: Double) -> Double? { max(0, last + Self.interval - now) }

    func service(now: Double) {
        guard now - last >= Self.interval else { return }
        last = now
        for tap in taps { tap.refreshMaxFrameLength() }
    }
}
