import CFerry
import Glibc

/// An io_uring (io_uring(7)) used to hand the kernel a burst of writes with one
/// `io_uring_enter`: the caller prepares up to `capacity` WRITE or WRITEV entries, then
/// `submitAndWait` submits them and waits for all their completions, and
/// `reap` reads the results in completion order. One thread at a time uses a
/// ring; nothing outlives a burst, so the completion queue (twice the
/// submission queue, io_uring_setup(2)) never overflows.
///
/// Writes carry RWF_NOWAIT: they run inline in `io_uring_enter` on the calling
/// thread's CPU (no io-wq worker thread was seen), and one that would block
/// completes with -EAGAIN. Without the flag, a full tun send buffer made the
/// kernel poll for room and `io_uring_enter` wait for it, O_NONBLOCK notwithstanding.
public final class IOUring: @unchecked Sendable {
    /// Entries that may be prepared between two `submitAndWait` calls.
    public let capacity: Int

    @usableFromInline let ring: FileDescriptor
    let rings: MemoryMapping
    let entries: MemoryMapping
    @usableFromInline let sqTail: UnsafeMutableRawPointer
    @usableFromInline let sqMask: UInt32
    @usableFromInline let sqes: UnsafeMutableRawPointer
    @usableFromInline let cqHead: UnsafeMutableRawPointer
    @usableFromInline let cqTail: UnsafeMutableRawPointer
    @usableFromInline let cqMask: UInt32
    @usableFromInline let cqes: UnsafeMutableRawPointer
    /// Our copy of the submission tail: only this thread writes it.
    @usableFromInline var tail: UInt32 = 0
    /// Entries prepared since the last `submitAndWait`.
    @usableFromInline var prepared: UInt32 = 0

    /// Sets up a ring of at least `entries` submission entries (the kernel
    /// rounds up to a power of two). Throws when io_uring is missing or
    /// disabled (ENOSYS, EPERM from kernel.io_uring_disabled) or the kernel
    /// lacks the single-mmap layout (5.4+).
    public init(entries: Int) throws(SystemError) {
        precondition(entries > 0 && entries <= 4096, "io_uring entries \(entries)")
        var params = io_uring_params()
        // SUBMIT_ALL: a refused entry does not stop the ones after it.
        // COOP_TASKRUN: completion work runs when we enter the kernel anyway,
        // not by interrupting the worker.
        params.flags = FERRY_IORING_SETUP_SUBMIT_ALL | FERRY_IORING_SETUP_COOP_TASKRUN
        let fd = FileDescriptor(owning: try syscall("io_uring_setup") {
            ferry_io_uring_setup(UInt32(entries), &params)
        })
        guard params.features & FERRY_IORING_FEAT_SINGLE_MMAP != 0 else {
            throw SystemError("io_uring_setup: no IORING_FEAT_SINGLE_MMAP (kernel older than 5.4)", errno: ENOSYS)
        }
        let sqLength = Int(params.sq_off.array) + Int(params.sq_entries) * MemoryLayout<UInt32>.size
        let cqLength = Int(params.cq_off.cqes) + Int(params.cq_entries) * 16
        let rings = try MemoryMapping(fd: fd.rawValue, length: max(sqLength, cqLength),
                                      offset: Int(FERRY_IORING_OFF_SQ_RING))
        let entries = try MemoryMapping(fd: fd.rawValue, length: Int(params.sq_entries) * 64,
                                        offset: Int(FERRY_IORING_OFF_SQES))
        // SAFETY: the rings mapping holds max(sqLength, cqLength) bytes, computed from the offsets and
        // entry counts io_uring_setup returned: the tail, head and mask words, the indirection array
        // (sq_entries u32s) and the completion entries all lie inside it; the entries mapping holds
        // sq_entries 64-byte SQEs.
        let base = rings.base
        capacity = Int(params.sq_entries)
        sqTail = base + Int(params.sq_off.tail)
        sqMask = base.load(fromByteOffset: Int(params.sq_off.ring_mask), as: UInt32.self)
        sqes = entries.base
        cqHead = base + Int(params.cq_off.head)
        cqTail = base + Int(params.cq_off.tail)
        cqMask = base.load(fromByteOffset: Int(params.cq_off.ring_mask), as: UInt32.self)
        cqes = base + Int(params.cq_off.cqes)
        tail = sqTail.load(as: UInt32.self)
        // The indirection array maps ring slot i to entry i for good: entries
        // are written in place at the slot they go out on.
        let array = (base + Int(params.sq_off.array)).assumingMemoryBound(to: UInt32.self)
        for i in 0..<Int(params.sq_entries) { array[i] = UInt32(i) }
        self.ring = fd
        self.rings = rings
        self.entries = entries
    }

    /// Queues a non-blocking write (RWF_NOWAIT) of `count` iovecs to `fd` at the
    /// file's position (off -1, as for writev), tagged `userData`. The iovecs must stay valid until
    /// `submitAndWait` returns. At most `capacity` between two submissions.
    @inlinable
    public func prepareWritev(fd: Int32, _ iovecs: UnsafePointer<iovec>, count: Int, userData: UInt64) {
        prepare(FERRY_IORING_OP_WRITEV, fd: fd, address: UnsafeRawPointer(iovecs), length: count, userData: userData)
    }

    /// Queues a non-blocking write (RWF_NOWAIT) of the `length` bytes at `bytes` to `fd` at the
    /// file's position, tagged `userData`: one buffer, which the kernel takes without an iovec
    /// array to copy in and walk. The bytes must stay valid until `submitAndWait` returns. At
    /// most `capacity` between two submissions.
    @inlinable
    public func prepareWrite(fd: Int32, _ bytes: UnsafeRawPointer, length: Int, userData: UInt64) {
        prepare(FERRY_IORING_OP_WRITE, fd: fd, address: bytes, length: length, userData: userData)
    }

    /// Fills the next submission entry: `opcode` on `fd` at the file's position, `address` and
    /// `length` as the opcode reads them (iovecs and their count, or bytes and their length).
    @inlinable
    func prepare(_ opcode: UInt8, fd: Int32, address: UnsafeRawPointer, length: Int, userData: UInt64) {
        precondition(Int(prepared) < capacity, "more io_uring entries than the ring holds")
        // SAFETY: the slot index is masked to the mapped entry array; a slot
        // is reused only after the kernel consumed it (every submitAndWait
        // waits for all completions, and completion follows consumption).
        let sqe = sqes + Int((tail &+ prepared) & sqMask) &* 64
        sqe.initializeMemory(as: UInt8.self, repeating: 0, count: 64)
        sqe.storeBytes(of: opcode, toByteOffset: 0, as: UInt8.self)
        sqe.storeBytes(of: fd, toByteOffset: 4, as: Int32.self)
        sqe.storeBytes(of: UInt64.max, toByteOffset: 8, as: UInt64.self)
        sqe.storeBytes(of: UInt64(UInt(bitPattern: address)), toByteOffset: 16, as: UInt64.self)
        sqe.storeBytes(of: UInt32(truncatingIfNeeded: length), toByteOffset: 24, as: UInt32.self)
        sqe.storeBytes(of: FERRY_RWF_NOWAIT, toByteOffset: 28, as: UInt32.self)
        sqe.storeBytes(of: userData, toByteOffset: 32, as: UInt64.self)
        prepared &+= 1
    }

    /// Submits what was prepared and waits until every entry has completed.
    /// A throw leaves the ring in an unknown state: its owner stops using it.
    @inlinable
    public func submitAndWait() throws(SystemError) {
        // SAFETY: sqTail, cqTail and cqHead are the kernel's index words in the rings mapping (init),
        // alive while this ring (which owns the mapping) is.
        let count = prepared
        guard count > 0 else { return }
        prepared = 0
        tail &+= count
        // Release: the entries written above are visible before the kernel sees the tail.
        ferry_store_release_u32(sqTail, tail)
        var unsubmitted = count
        while true {
            // Acquire: completions counted here are fully written.
            let ready = ferry_load_acquire_u32(cqTail) &- ferry_load_relaxed_u32(cqHead)
            if unsubmitted == 0 && ready >= count { return }
            // min_complete counts what the completion queue holds, which
            // starts each burst empty (`reap` took the last one's).
            let result = try syscall("io_uring_enter") {
                ferry_io_uring_enter(ring.rawValue, unsubmitted, count, FERRY_IORING_ENTER_GETEVENTS)
            }
            unsubmitted &-= min(UInt32(result), unsubmitted)
        }
    }

    /// Calls `body` with each completion's user data and result (bytes, or a
    /// negated errno), then hands the completion slots back to the kernel.
    @inlinable
    public func reap(_ body: (UInt64, Int32) -> Void) {
        // SAFETY: cqHead and cqTail are index words in the rings mapping (init), alive while this ring
        // is.
        var head = ferry_load_relaxed_u32(cqHead)
        // Acquire: pairs with the kernel's release of the completion tail.
        let end = ferry_load_acquire_u32(cqTail)
        while head != end {
            // SAFETY: masked to the mapped completion array of 16-byte entries.
            let cqe = cqes + Int(head & cqMask) &* 16
            body(cqe.load(fromByteOffset: 0, as: UInt64.self), cqe.load(fromByteOffset: 8, as: Int32.self))
            head &+= 1
        }
        // Release: the kernel may reuse the slots once it sees the new head.
        ferry_store_release_u32(cqHead, head)
    }
}
