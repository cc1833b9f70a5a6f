import Glibc
import Packets
import Platform
import Synchronization

// TAP → guest with the kernel's copy only: a worker that knows every frame of
// a queue goes to one guest reads the frame with `readFrame` straight into
// that guest's receive buffers (Worker+Direct.swift). The port's part is the
// read itself and knowing how long a frame can be, so the worker only offers
// buffers that hold the longest.
extension TapPort {
    /// The longest frame the kernel may hand this port: its MTU plus the
    /// Ethernet header. A tagged frame may be 4 bytes longer; on the access
    /// ports the direct path serves it is dropped anyway.
    @inlinable
    public var maxFrameLength: Int {
        readBufferSize == Self.bufferSize ? maxFrameLengthValue.load(ordering: .relaxed) : Self.gsoBufferSize
    }

    /// Reads the MTU again (someone may `ip link set mtu`), from the control
    /// thread. Until it runs, a frame longer than the old MTU allowed finds a
    /// guest buffer too small, fills it and is dropped as `rx_buffer_too_small`.
    /// An interface that cannot be asked (moved to another namespace) keeps its last value.
    public func refreshMaxFrameLength() {
        guard let mtu = try? device.mtu() else { return }
        maxFrameLengthValue.store(mtu &+ Ethernet.headerSize, ordering: .relaxed)
    }

    /// Reads one frame, its virtio-net header first, into the `count` buffers
    /// of `iovecs`; returns the bytes read, or nil when the queue is empty or
    /// the read failed (counted as `io_error` on the queue). tun cuts a frame
    /// longer than the buffers and returns what it copied, so a read that fills
    /// them is the caller's to distrust.
    @inlinable
    public func readFrame(queue q: Int, _ iovecs: UnsafePointer<iovec>, count: Int) -> Int? {
        do throws(SystemError) {
            guard case .done(let n) = try device.readv(queue: q, iovecs, count: count) else { return nil }
            return n
        } catch {
            counters[q].dropped(.ioError)
            lastErrorCode.store(error.errno, ordering: .relaxed)
            return nil
        }
    }
}
