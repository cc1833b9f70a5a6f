/// How the control plane stops the data path before it changes what the data
/// path reads (rings, memory tables, call descriptors). The engine supplies the
/// real one (pause the worker that owns the device, run the change, resume);
/// without a worker the change simply runs.
public protocol DataPathGate: AnyObject, Sendable {
    func whilePaused(_ change: () -> Void)
}

/// The gate for a device no worker is polling yet, and for tests.
public final class UngatedDataPath: DataPathGate {
    public init() {}
    public func whilePaused(_ change: () -> Void) { change() }
}
