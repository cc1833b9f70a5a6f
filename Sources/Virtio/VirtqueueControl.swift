/// What the control plane sets on a ring and asks of it, in either layout.
/// vhost-user's per-ring messages may come before the features say which
/// layout the driver took (QEMU sends SET_VRING_CALL first), so a device keeps
/// one ring of each layout per queue, applies every setting to both, and
/// starts the one negotiated. Control thread only: calls through it are
/// dynamically dispatched, which the data path never does (`Virtqueue`).
public protocol VirtqueueControl: AnyObject {
    var index: Int { get }
    var configuration: RingConfiguration { get set }
    var enabled: Bool { get set }
    var kickFD: Int32 { get set }
    var callFD: Int32 { get set }
    var errorFD: Int32 { get set }
    var isRunning: Bool { get }
    var error: VirtqueueError? { get }
    /// SET_VRING_BASE's and GET_VRING_BASE's number, as this layout reads it.
    var ringBase: UInt32 { get set }
    /// Where the ring started reading, and a mark that moves with the driver's
    /// side (nil while stopped): the control thread's health check compares them.
    var startIndex: UInt16 { get }
    var availIndexInRing: UInt16? { get }
    func start(memory: GuestMemory) throws(VirtqueueError)
    /// Stops the ring and returns the number GET_VRING_BASE answers; a restart resumes there.
    func stopRing() -> UInt32
    func reset()
}

extension SplitVirtqueue: VirtqueueControl {
    /// vhost-user.rst, "A vring descriptor index for split virtqueues": bits 0-15.
    public var ringBase: UInt32 {
        get { UInt32(baseIndex.rawValue) }
        set { baseIndex = RingIndex(UInt16(truncatingIfNeeded: newValue)) }
    }

    public func stopRing() -> UInt32 { UInt32(stop().rawValue) }
}

extension PackedVirtqueue: VirtqueueControl {
    public var ringBase: UInt32 {
        get { baseIndex }
        set { baseIndex = newValue }
    }

    public func stopRing() -> UInt32 { stop() }
}
