import ControlProtocol

/// A rate as `ferry ctl stats` and `ferry ctl top` print it: under 1,000 as it is (a tenth
/// at most), above with an SI prefix and three significant digits (1.23k, 45.6M, 123G),
/// as `ip -h -s link` and `top` shorten theirs so that columns stay narrow.
enum RateText {
    /// A port's rx_pps, rx_bps, tx_pps, tx_bps and drops_pps cells; "-" each before it has rates.
    static func cells(_ rates: PortRates?) -> [String] {
        guard let r = rates else { return Array(repeating: "-", count: 5) }
        return [r.rxPPS, r.rxBPS, r.txPPS, r.txBPS, r.dropsPPS].map(format)
    }

    static func format(_ value: Double) -> String {
        guard value.isFinite, value >= 0 else { return "-" }
        if value < 1000 {
            let tenths = (value * 10).rounded()
            return tenths.truncatingRemainder(dividingBy: 10) == 0 ? String(Int(tenths / 10)) : String(tenths / 10)
        }
        var scaled = value
        var prefix = 0
        let prefixes = ["", "k", "M", "G", "T", "P"]
        while scaled >= 999.5 && prefix < prefixes.count - 1 {
            scaled /= 1000
            prefix += 1
        }
        let digits = scaled >= 99.95 ? 0 : scaled >= 9.995 ? 1 : 2
        return fixed(scaled, digits: digits) + prefixes[prefix]
    }

    /// `value` with `digits` decimals, without Foundation's locale-dependent formatting.
    private static func fixed(_ value: Double, digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let units = Int((value * scale).rounded())
        guard digits > 0 else { return String(units) }
        let whole = String(units / Int(scale))
        var fraction = String(units % Int(scale))
        while fraction.count < digits { fraction = "0" + fraction }
        return whole + "." + fraction
    }
}
