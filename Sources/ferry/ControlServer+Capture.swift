import ControlProtocol
import Engine
import Packets
import Telemetry

extension ControlServer {
    /// `capture`: hands the connection to the capture service, which writes a pcap stream
    /// on it from now on. Returns why it was refused (the connection stays a JSON one),
    /// nil when started.
    func startCapture(_ fd: Int32, _ parameters: CaptureParameters) -> ControlError? {
        let request = CaptureRequest(portName: parameters.port, receive: parameters.direction != .tx,
                                     transmit: parameters.direction != .rx, count: parameters.count,
                                     snapLength: parameters.snapLength)
        do throws(CaptureRefusal) {
            try captures.start(fd: fd, request: request)
        } catch {
            return .refused(error.message)
        }
        return nil
    }
}
