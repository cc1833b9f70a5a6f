import Glibc
import MallocInterposerSwift
import Synchronization

/// The allocations of one thread, the one that runs the measured bursts.
///
/// The interposer counts the allocations of every thread in the process, and
/// a test process has more than the one running the test: XCTest runs each
/// test's async setUp and tearDown as tasks on libdispatch's worker threads.
/// The setUp task's `XCTestExpectation.fulfill` lets the test thread go on
/// and only then releases its `XCTWaiter` (whose deinit grows an array), and
/// the pool starts threads (`pthread_create` callocs their TLS) on its own
/// schedule. Usually that is over before the first measured round; on a
/// loaded machine, with that worker preempted, it lands in one and bursts that
/// allocated nothing fail the probe. The bursts under test run on the
/// measuring thread, so its allocations are the ones that count; the
/// process's total is reported beside them.
enum MeasuringThreadAllocations {
    private static let measuringThread = Atomic<UInt>(0)
    private static let count = Atomic<Int>(0)
    private static let bytes = Atomic<Int>(0)

    /// From now on, the calling thread's allocations between
    /// `MallocInterposerSwift.hook()` and `unhook()` are counted here.
    static func start() {
        // The statics are set up here, not lazily inside the allocator.
        measuringThread.store(pthread_self(), ordering: .relaxed)
        count.store(0, ordering: .relaxed)
        bytes.store(0, ordering: .relaxed)
        // Runs in the allocator on the allocating thread: it must not allocate.
        MallocInterposerSwift.setAllocationHook { size in
            // Named through the type: a C function pointer captures nothing, not even `Self`.
            guard pthread_self() == MeasuringThreadAllocations.measuringThread.load(ordering: .relaxed) else { return }
            MeasuringThreadAllocations.count.add(1, ordering: .relaxed)
            MeasuringThreadAllocations.bytes.add(size, ordering: .relaxed)
        }
    }

    /// Stops counting; returns what the measuring thread allocated since `start()`.
    static func stop() -> (count: Int, bytes: Int) {
        MallocInterposerSwift.setAllocationHook(nil)
        return (count.load(ordering: .relaxed), bytes.load(ordering: .relaxed))
    }
}
