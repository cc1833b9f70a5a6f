import Glibc

/// The calling thread's scheduling class: the fair one every task starts in,
/// or real-time FIFO at the lowest priority, which runs as soon as it is woken
/// ahead of every fair task on its CPU (sched(7)).
public enum ThreadScheduling {
    /// Moves the calling thread into SCHED_FIFO priority 1 (`realtime`) or back
    /// into SCHED_OTHER. Nil when done, else the error: EPERM without
    /// CAP_SYS_NICE or an RLIMIT_RTPRIO that allows priority 1.
    public static func set(realtime: Bool) -> SystemError? {
        var parameters = sched_param()
        parameters.sched_priority = realtime ? 1 : 0
        // Returns the error number rather than setting errno.
        let error = pthread_setschedparam(pthread_self(), realtime ? SCHED_FIFO : SCHED_OTHER, &parameters)
        return error == 0 ? nil : SystemError("pthread_setschedparam", errno: error)
    }
}
