import Model
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
    /// Reads which ports are captured, once per pass: one relaxed load while
    /// none is, the whole cost of capture then.
    @inlinable
    func loadCaptureSelection() {
        // Through the `let` chain, not a local: a local copy of the reference was retained every pass.
        capturing = bridge.capture.isActive.load(ordering: .relaxed)
        if capturing {
            bridge.capture.load(receive: capturedReceive, transmit: capturedTransmit)
            captureSnapLength = bridge.capture.snapLength.load(ordering: .relaxed)
        }
    }

    /// Whether this pass copies the frames port `port` receives.
    @inlinable
    func capturesReceive(_ port: Int) -> Bool {
        // SAFETY: port is a port index, below PortSet.maxPorts (Switch refuses more ports,
        // Worker.prepare checks the table), so port >> 6 < PortSet.wordCount, the bitmap's length
        // (Worker.init).
        capturing && capturedReceive[port &>> 6] & (1 &<< UInt64(port & 63)) != 0
    }

    /// Whether this pass copies the frames handed to port `port`.
    @inlinable
    func capturesTransmit(_ port: Int) -> Bool {
        // SAFETY: as capturesReceive: port < PortSet.maxPorts, so port >> 6 is inside the bitmap.
        capturing && capturedTransmit[port &>> 6] & (1 &<< UInt64(port & 63)) != 0
    }

    /// The direct TAP → guest path moves frames without a pull or a push, so
    /// while either end is captured its frames take the usual path.
    @inlinable
    func isCaptured(port: PortIndex, peer: Int) -> Bool {
        capturing && (capturesReceive(Int(port)) || capturesTransmit(Int(port)) || capturesReceive(peer)
            || capturesTransmit(peer))
    }

    /// Copies every frame of `batch` into the capture ring, with one timestamp for the burst.
    @inlinable
    func capture(_ batch: PacketBatch, port: PortIndex, direction: CaptureDirection) {
        let microseconds = WallClock.microseconds()
        var f = 0
        let count = batch.count
        while f < count {
            captureRing.append(frame: f, of: batch, port: port.rawValue, direction: direction, microseconds: microseconds,
                               snapLength: captureSnapLength)
            f &+= 1
        }
    }
}
