import ControlProtocol
import Engine
import Packets
import Platform
import Telemetry

extension ControlServer {
    /// `capture`: hands the connection to the capture service, which takes it out of
    /// `connection` and writes a pcap stream on it from now on. Returns why it was
    /// refused (the connection stays a JSON one, and stays in `connection`), nil when started.
    func startCapture(_ connection: DescriptorSlot, _ parameters: CaptureParameters) -> ControlError? {
        let request = CaptureRequest(portName: parameters.port, receive: parameters.direction != .tx,
                                     transmit: parameters.direction != .rx, count: parameters.count,
                                     snapLength: parameters.snapLength)
        do throws(CaptureRefusal) {
            try captures.start(connection: connection, request: request)
        } catch {
            return .refused(error.message)
        }
        return nil
    }
}
