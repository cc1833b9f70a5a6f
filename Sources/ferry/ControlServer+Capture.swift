import Engine
import Foundation
import Glibc
import Packets
import Telemetry

extension ControlServer {
    /// `capture`: checks the request and hands the connection to the capture
    /// service, which writes a pcap stream on it from now on. Returns the error
    /// reply when refused (the connection stays a JSON one), nil when started.
    func startCapture(_ fd: Int32, _ fields: [String: Any]) -> [String: Any]? {
        do throws(ControlError) {
            let request = ControlRequest(fields: fields)
            let port = try request.string("port")
            var receive = true
            var transmit = true
            if fields["direction"] != nil {
                switch try request.string("direction") {
                case "rx": transmit = false
                case "tx": receive = false
                case "both": break
                case let other: throw ControlError("direction '\(other)' is not rx, tx or both")
                }
            }
            let count = try request.wholeNumber("count", in: 1...Int(Int32.max))
            let snapLength = try request.wholeNumber("snaplen", in: 1...CaptureRing.maxSnapLength)
                ?? CaptureRing.maxSnapLength
            do throws(CaptureRefusal) {
                try captures.start(fd: fd, request: CaptureRequest(portName: port, receive: receive, transmit: transmit,
                                                                   count: count, snapLength: snapLength))
            } catch {
                throw ControlError(error.message)
            }
            return nil
        } catch {
            return ["error": error.message]
        }
    }
}
