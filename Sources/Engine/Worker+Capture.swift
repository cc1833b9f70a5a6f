import Packets
import Platform
import Synchronization

// Capture: copies of the frames of the captured ports into this worker's
// capture ring, for the control thread to write out as pcap.
//
// Received frames are copied as the port gave them (right after pull), frames
// for a port as Ferry hands them over (right before push, tags already edited
// for that port): both are the frame as it is on that port's wire. A frame the
// port then drops (no receive buffer, a full queue) was still handed over and
// is in the capture; its drop is in the port's counters.
extension Worker {
    /// Reads which ports are captured, once per pass: one relaxed load each,
    /// the whole cost of capture while none runs.
    @inlinable
    func loadCaptureSelection() {
        let selection = bridge.capture
        capturingReceive = selection.receiving.load(ordering: .relaxed)
        capturingTransmit = selection.transmitting.load(ordering: .relaxed)
        if capturingReceive | capturingTransmit != 0 {
            captureSnapLength = selection.snapLength.load(ordering: .relaxed)
        }
    }

    /// The direct TAP → guest path moves frames without a pull or a push, so
    /// while either end is captured its frames take the usual path.
    @inlinable
    func isCaptured(port: UInt16, peer: Int) -> Bool {
        let both = (1 &<< UInt64(port)) | (1 &<< UInt64(peer))
        return (capturingReceive | capturingTransmit) & both != 0
    }

    /// Copies every frame of `batch` into the capture ring, with one timestamp for the burst.
    @inlinable
    func capture(_ batch: PacketBatch, port: UInt16, direction: CaptureDirection) {
        let microseconds = WallClock.microseconds()
        var f = 0
        let count = batch.count
        while f < count {
            captureRing.append(frame: f, of: batch, port: port, direction: direction, microseconds: microseconds,
                               snapLength: captureSnapLength)
            f &+= 1
        }
    }
}
