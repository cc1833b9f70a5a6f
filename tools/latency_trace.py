"""Where each slow ping of tools/bench-latency.py lost its time (`--trace DIR`).

`Trace` records the scheduler around one ping run (`perf record -a`: sched_switch, waking,
wakeup, migrations, ping's `sendto` and `recvfrom`, softirqs; CLOCK_MONOTONIC) and samples
every CPU's `steal` from /proc/stat every second (this is a VM: time the hypervisor gave the
vCPU's host thread to something else shows there, and only there). `attribute()` then walks
each round trip — ping's `sendto` entry to the `recvfrom` exit that returned the reply — and
splits its time by ping's state and by what ran instead:

  ping running            ping on a CPU (its syscalls); `softirq` apart: softirqs on its CPU while
                          it was current (the bridge's whole path runs so, inside `sendto`)
  ping runnable: COMM     ping ready to run (preempted, or woken) while COMM held its CPU:
                          `ferry-worker` (Ferry's worker), `idle` (the CPU idle: the IPI to a
                          halted vCPU and its return, which the hypervisor schedules), a task by name
  worker running          ping asleep in `recvfrom`, Ferry's worker forwarding the frames
  worker waking           ping asleep, the worker's wake-up sent to its vCPU but not yet taken there
  ping waking             the same for ping's wake-up by the worker (an IPI to a halted vCPU is
                          the hypervisor's to deliver: it has to run that vCPU first)
  worker runnable: COMM   ping asleep, the worker woken but its CPU held by COMM (or `idle`)
  steal (X's vCPU)        X on a CPU for longer than the scheduler charged it: its clock leaves
                          out what the hypervisor stole (PARAVIRT_TIME_ACCOUNTING)

`KernelTrace` (`--explain`) records the same scheduler events and ping's and the worker's every
system call into a tracing instance of its own, read only after the run (no reader competes
for a CPU), and adds two causes: `host stall` — a CPU silent (no event at all) for 50 µs or more
while ping or the worker ran there: they make a system call every few microseconds and take
the timer interrupt, so silence is time the vCPU did not run — and `picked over ping after the
worker ran`: the worker (real-time) preempted ping, and when it slept the fair class picked
another runnable task rather than ping (EEVDF: ping, having run since that task became
runnable, is not eligible), which then held ping's CPU for its slice.

A slow reply is classed by its largest cause: Ferry's worker running (on ping's CPU or while
ping waits), Ferry's other threads, an idle vCPU waking, steal, a host stall, another task
(which, and on whose CPU), softirq, ping's own run. The
/proc/stat samples back the steal estimate up only coarsely (10 ms units). `perf` itself and
the script's sampler thread are tasks like any other: they show up by name. Timer slack is
not in a round trip (busybox times from just before `sendto` to just after `recvfrom`).
"""

from __future__ import annotations

import bisect
import collections
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

EVENTS = ("sched:sched_switch,sched:sched_waking,sched:sched_stat_runtime,sched:sched_wakeup,sched:sched_migrate_task,"
          "syscalls:sys_enter_sendto,syscalls:sys_exit_recvfrom,irq:softirq_entry,irq:softirq_exit")
STEAL_PERIOD = 1.0
STALL_NS = 50_000  # no event on a CPU running ping or the worker for this long: a stall (KernelTrace)
USER_HZ = os.sysconf("SC_CLK_TCK")


def read_steal() -> list[int]:
    """Each CPU's steal so far, in USER_HZ ticks."""
    steal = []
    with open("/proc/stat") as f:
        for line in f:
            if re.match(r"cpu\d", line):
                steal.append(int(line.split()[8]))
    return steal


class Trace:
    """`perf record` of the scheduler, plus steal samples, while the block runs."""

    def __init__(self, data: Path):
        self.data = data
        self.samples: list[tuple[int, list[int]]] = []
        self.stop = threading.Event()
        self.own: set[int] = set()

    def __enter__(self):
        # -m: 4 MiB a CPU; with perf's default a busy machine's switches overran it and lost windows.
        self.perf = subprocess.Popen(["perf", "record", "-q", "-a", "-k", "mono", "-m", "1024", "-e", EVENTS,
                                      "-o", str(self.data)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # perf's start-up (it maps buffers on every CPU) out of the pings' way
        self.sampler = threading.Thread(target=self.sample, daemon=True)
        self.sampler.start()
        self.own = {int(t) for t in os.listdir("/proc/self/task")}  # the benchmark's own threads
        return self

    def sample(self):
        while True:
            self.samples.append((time.monotonic_ns(), read_steal()))
            if self.stop.wait(STEAL_PERIOD):
                self.samples.append((time.monotonic_ns(), read_steal()))
                return

    def __exit__(self, *exc):
        self.stop.set()
        self.sampler.join()
        self.perf.send_signal(signal.SIGINT)
        self.perf.wait(timeout=60)

    def events(self):
        return events(self.data)

    def steal_ticks(self) -> list[int]:
        """Steal per CPU over the whole trace, in USER_HZ ticks."""
        if len(self.samples) < 2:
            return []
        return [b - a for a, b in zip(self.samples[0][1], self.samples[-1][1])]

    def steal_near(self, cpu: int, t0: int, t1: int) -> int:
        """Steal of `cpu`, in ticks, over the sample periods that overlap [t0, t1]."""
        total = 0
        for (ta, sa), (tb, sb) in zip(self.samples, self.samples[1:]):
            if tb >= t0 and ta <= t1 and cpu < len(sa):
                total += sb[cpu] - sa[cpu]
        return total


# x86-64 numbers of the system calls ping and Ferry's worker make (others print as their number).
SYSCALLS = {0: "read", 1: "write", 7: "poll", 13: "rt_sigaction", 14: "rt_sigprocmask", 15: "rt_sigreturn",
            16: "ioctl", 19: "readv", 20: "writev", 24: "sched_yield", 35: "nanosleep", 36: "getitimer",
            38: "setitimer", 39: "getpid", 44: "sendto", 45: "recvfrom", 46: "sendmsg", 47: "recvmsg",
            144: "sched_setscheduler", 186: "gettid", 202: "futex", 203: "sched_setaffinity",
            204: "sched_getaffinity", 228: "clock_gettime", 230: "clock_nanosleep", 271: "ppoll",
            309: "getcpu", 314: "sched_setattr", 426: "io_uring_enter"}


class KernelTrace(Trace):
    """The cheap recorder (`--explain`): a tracing instance of its own (tracefs
    instances/NAME, its own per-CPU buffers), filled by the kernel while ping runs and read
    only after it: no reader process wakes during the run (perf record's does, and showed
    up among the slow replies' causes). Recorded: the scheduler's switches, wake-ups and
    migrations and the interrupts on every CPU, and every system call of ping (`busybox`)
    and of the Ferry under test's workers. The syscall tracepoint puts every task's system
    calls through the traced entry (~0.1 µs each); the rest is ~0.1 µs per event.

    A vCPU the host stops shows nowhere in the guest (steal reads 0 on this VM), except as
    silence: ping and the worker make a system call every few microseconds and take
    interrupts, so a stretch of 50 µs or more without a single event on a CPU while one
    of them runs there is time the CPU did not run (`attribute`: "host stall")."""

    EVENTS = ("sched/sched_switch", "sched/sched_waking", "sched/sched_wakeup", "sched/sched_migrate_task",
              "irq/irq_handler_entry", "irq/softirq_entry", "irq/softirq_exit",
              "irq_vectors/local_timer_entry", "irq_vectors/reschedule_entry",
              "irq_vectors/call_function_single_entry", "irq_vectors/call_function_entry",
              "raw_syscalls/sys_enter", "raw_syscalls/sys_exit")
    ROOT = Path("/sys/kernel/tracing/instances")

    def __init__(self, data: Path, workers: set[int]):
        super().__init__(data)
        self.workers = workers
        self.dir = self.ROOT / f"ferry-lat-{os.getpid()}"
        self.lost = 0

    def write(self, name: str, value: str):
        (self.dir / name).write_text(value + "\n")

    def __enter__(self):
        if self.dir.exists():
            self.dir.rmdir()
        self.dir.mkdir()
        self.write("tracing_on", "0")
        self.write("buffer_size_kb", "8192")  # a CPU's 2.5 s of a busy machine's switches fit
        self.write("trace_clock", "mono")
        self.write("options/overwrite", "0")  # full: the newest are dropped, and counted
        who = " || ".join(['comm == "busybox"'] + [f"common_pid == {w}" for w in sorted(self.workers)])
        for event in ("raw_syscalls/sys_enter", "raw_syscalls/sys_exit"):
            self.write(f"events/{event}/filter", who)
        for event in self.EVENTS:
            self.write(f"events/{event}/enable", "1")
        self.write("tracing_on", "1")
        self.sampler = threading.Thread(target=self.sample, daemon=True)
        self.sampler.start()
        self.own = {int(t) for t in os.listdir("/proc/self/task")}
        return self

    def __exit__(self, *exc):
        self.write("tracing_on", "0")
        self.stop.set()
        self.sampler.join()
        try:
            for cpu in sorted(self.dir.glob("per_cpu/cpu*/stats")):
                m = re.search(r"^dropped events: (\d+)", cpu.read_text(), re.M)
                self.lost += int(m.group(1)) if m else 0
            with open(self.dir / "trace") as src, open(self.data, "w") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
        finally:
            for event in self.EVENTS:
                self.write(f"events/{event}/enable", "0")
            self.dir.rmdir()

    def events(self):
        for line in self.data.read_text().splitlines():
            m = KERNEL_LINE.match(line)
            if not m:
                continue
            comm, tid, cpu, sec, usec, event, rest = m.groups()
            t, tid, cpu = int(sec) * 1_000_000_000 + int(usec.ljust(9, "0")), int(tid), int(cpu)
            if event in ("sys_enter", "sys_exit"):
                nr = re.match(r"NR (-?\d+)", rest)
                name = SYSCALLS.get(int(nr.group(1)), f"nr{nr.group(1)}") if nr else "?"
                if tid not in self.workers:
                    comm = "busybox"  # the filter lets only ping's and the workers' through
                if event == "sys_exit":
                    ret = int(rest.rsplit("=", 1)[1])
                    rest = f"0x{ret:x}" if ret >= 0 else f"{ret}"
                yield t, cpu, comm, tid, f"syscalls:{event}_{name}", rest
                continue
            group = "irq_vectors" if event.endswith(("_entry", "_exit")) and not event.startswith(("softirq", "irq_")) \
                else "irq" if event.startswith(("softirq", "irq_")) else "sched"
            yield t, cpu, comm, tid, f"{group}:{event}", rest


# ftrace's text: `comm-pid [cpu] flags seconds.micros: event: fields` (mono clock, µs).
KERNEL_LINE = re.compile(r"^\s*(.+)-(\d+)\s+\[(\d+)\]\s+\S+\s+(\d+)\.(\d+):\s+(\w+):\s*(.*)$")


LINE = re.compile(r"^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+(\d+)\.(\d+):\s+(\S+):\s*(.*)$")


def events(data: Path):
    out = subprocess.run(["perf", "script", "-i", str(data), "--ns", "-F", "comm,tid,cpu,time,event,trace"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        comm, tid, cpu, sec, nsec, event, rest = m.groups()
        yield int(sec) * 1_000_000_000 + int(nsec.ljust(9, "0")), int(cpu), comm, int(tid), event.rstrip(":"), rest


def fields(rest: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", rest))


def ferry_threads(ferry_pid: int | None) -> tuple[set[int], set[int]]:
    """The worker threads (`ferry-wN`) of the Ferry under test (teammates' Ferrys name theirs
    alike), and its other threads (control, learning)."""
    workers, others = set(), set()
    for task in Path(f"/proc/{ferry_pid}/task").glob("*") if ferry_pid else []:
        try:
            (workers if (task / "comm").read_text().startswith("ferry-w") else others).add(int(task.name))
        except OSError:
            pass
    return workers, others


def who(comm: str, pid: int, workers: set[int], ferry: set[int] = frozenset(), own: set[int] = frozenset()) -> str:
    if pid == 0:
        return "idle"
    if pid in workers:
        return "ferry-worker"
    if pid in ferry:
        return "Ferry's other threads"
    if pid in own:
        return "the benchmark script"
    if comm.startswith("ferry-w"):
        return "another Ferry's worker"
    if comm.startswith("ksoftirqd"):
        return "ksoftirqd"
    return re.sub(r"/\d+$", "", comm)


def cgroup_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cgroup").read_text().strip().split(":")[-1]
    except OSError:
        return "?"


def attribute(trace: Trace, rtts: list[float], workers: set[int], ferry: set[int] = frozenset(),
              threshold: float = 200.0) -> dict:
    """Per reply slower than `threshold` µs (ping's own figure, by sequence): where its time went."""
    evs = sorted(trace.events(), key=lambda e: e[0])  # stable: events of one µs keep their order
    sends = collections.Counter(tid for _, _, comm, tid, ev, _ in evs
                                if ev == "syscalls:sys_enter_sendto" and comm in ("busybox", "ping"))
    if not sends:
        return {"error": "no ping in the trace"}
    ping = sends.most_common(1)[0][0]
    # Round trips: sendto entry -> the recvfrom exit with data, first in first out (a reply
    # later than the interval comes after the next request's sendto).
    windows = []
    sent: collections.deque = collections.deque()
    for t, cpu, comm, tid, ev, rest in evs:
        if tid != ping:
            continue
        if ev == "syscalls:sys_enter_sendto":
            sent.append((t, cpu))
        elif ev == "syscalls:sys_exit_recvfrom" and sent:
            ret = re.search(r"0x([0-9a-f]+)", rest)
            if ret and 0 < int(ret.group(1), 16) < 1 << 63:
                start, cpu0 = sent.popleft()
                windows.append((start, t, cpu0))
    # Busybox reads its clock just before `sendto` and just after `recvfrom` returns: a
    # preemption in between those and the syscalls is in its time, not in the window. So a
    # window starts where ping was preempted last before its `sendto` (if it was) and ends
    # where it ran again after a preemption on its way out of `recvfrom`.
    outs = [(t, rest) for t, _, _, tid, ev, rest in evs
            if ev == "sched:sched_switch" and f"prev_pid={ping} " in rest]
    ins = [t for t, _, _, tid, ev, rest in evs if ev == "sched:sched_switch" and f" next_pid={ping} " in rest]
    out_times = [t for t, _ in outs]
    # With all of ping's system calls traced (KernelTrace): a preemption that has one of them
    # between it and the round trip is past busybox's clock read, and not in its time.
    ping_calls_at = [t for t, _, _, tid, ev, _ in evs if tid == ping and ev.startswith("syscalls:sys_enter_")
                     and ev not in ("syscalls:sys_enter_sendto", "syscalls:sys_enter_recvfrom")]

    def syscall_between(a: int, b: int) -> bool:
        return bisect.bisect_right(ping_calls_at, a) < bisect.bisect_left(ping_calls_at, b)
    for i, (t0, t1, cpu0) in enumerate(windows):
        j = bisect.bisect_left(ins, t0) - 1  # ping's last switch-in before sendto
        if j >= 0:
            k = bisect.bisect_left(out_times, ins[j]) - 1
            if k >= 0 and re.search(r"prev_state=R", outs[k][1]) and not syscall_between(ins[j], t0):
                t0 = outs[k][0]
        k = bisect.bisect_right(out_times, t1)
        if k < len(outs) and outs[k][0] - t1 < 100_000 and re.search(r"prev_state=R", outs[k][1]) \
                and not syscall_between(t1, outs[k][0]):
            j = bisect.bisect_right(ins, outs[k][0])
            if j < len(ins):
                t1 = ins[j]
        windows[i] = (t0, t1, cpu0)
    # Per CPU: who runs from when (for "what ran instead").
    current: dict[int, list[tuple[int, str, int]]] = collections.defaultdict(list)
    for t, cpu, comm, tid, ev, rest in evs:
        if ev == "sched:sched_switch":
            nxt = re.search(r"next_comm=(.*) next_pid=(\d+)", rest)
            current[cpu].append((t, nxt.group(1), int(nxt.group(2))))
    times = {cpu: [x[0] for x in v] for cpu, v in current.items()}

    def split(cpu: int, a: int, b: int, into: collections.Counter, prefix: str):
        """Charges [a, b) to whatever ran on `cpu`, by name."""
        lst, ts = current.get(cpu, []), times.get(cpu, [])
        i = bisect.bisect_right(ts, a) - 1  # the switch in force at a
        t = a
        while t < b:
            comm, pid = (lst[i][1], lst[i][2]) if i >= 0 else ("?", -1)
            end = min(lst[i + 1][0], b) if i + 1 < len(lst) else b
            name = who(comm, pid, worker_tids, ferry, trace.own)
            into[f"{prefix}{name}"] += end - t
            if pid > 0 and name != "ferry-worker":
                others.setdefault(name, pid)
            t, i = end, i + 1

    others: dict[str, int] = {}
    worker_tids = workers
    ev_times = [e[0] for e in evs]
    charged = any(e[4] == "sched:sched_stat_runtime" for e in evs)
    def worker_state_at(index: int) -> tuple[str, int | None]:
        """The worker's state before event `index`: a window can open while it is busy with
        the one before (a late reply)."""
        for t, ecpu, comm, tid, ev, rest in reversed(evs[max(0, index - 2000):index]):
            if ev == "sched:sched_switch":
                if any(f"prev_pid={w} " in rest for w in worker_tids):
                    return ("runnable" if "prev_state=R" in rest else "asleep"), ecpu
                if any(f" next_pid={w} " in rest for w in worker_tids):
                    return "running", ecpu
            elif ev in ("sched:sched_waking", "sched:sched_wakeup") and \
                    int(fields(rest).get("pid", -1)) in worker_tids:
                return ("waking" if ev == "sched:sched_waking" else "runnable"), int(fields(rest).get("target_cpu", ecpu))
        return "asleep", None

    # Per CPU, every event's time: silence on a CPU that runs ping or the worker is a stall
    # (KernelTrace's docstring). Only a trace of their system calls is dense enough to tell.
    dense = any(e[4].startswith("syscalls:sys_enter_") and e[4] != "syscalls:sys_enter_sendto" for e in evs)
    on_cpu: dict[int, list[int]] = collections.defaultdict(list)
    for e in evs:
        on_cpu[e[1]].append(e[0])

    def silences(a: int, b: int) -> list[tuple[int, int, int, str]]:
        """Stretches of at least STALL_NS in [a, b) with no event on a CPU that ran ping or a
        worker: (start, ns inside [a, b), cpu, whose)."""
        found = []
        for c, ts in on_cpu.items():
            i = max(0, bisect.bisect_left(ts, a) - 1)
            while i + 1 < len(ts) and ts[i] < b:
                x, y = ts[i], ts[i + 1]
                i += 1
                if y - x < STALL_NS or y <= a:
                    continue
                lst = current.get(c, [])
                k = bisect.bisect_right(times.get(c, []), x) - 1
                pid = lst[k][2] if k >= 0 else -1
                whose = "ping" if pid == ping else "worker" if pid in worker_tids else None
                if whose:
                    found.append((x, min(y, b) - max(x, a), c, whose))
        return found

    def calls(tid_set: set[int], a: int, b: int) -> list[tuple[str, int]]:
        """The system calls of `tid_set` that ended in [a, b]: (name, ns), in order."""
        open_: dict[int, tuple[str, int]] = {}
        done = []
        for t, _, _, tid, ev, _ in evs[max(0, bisect.bisect_left(ev_times, a) - 200):bisect.bisect_right(ev_times, b)]:
            if tid not in tid_set:
                continue
            if ev.startswith("syscalls:sys_enter_"):
                open_[tid] = (ev[len("syscalls:sys_enter_"):], t)
            elif ev.startswith("syscalls:sys_exit_") and tid in open_:
                name, since = open_.pop(tid)
                if t >= a:
                    done.append((name, t - since))
        return done

    slow = []
    same_cpu = 0
    placed: dict[str, list[float]] = {"on ping's CPU": [], "on the other CPU": []}
    # Ping's own times pick the slow replies when every reply has its window; a trace that
    # lost events (perf's buffer overran) cannot be lined up with them, so the windows' own
    # lengths pick them then.
    aligned = len(windows) == sum(1 for x in rtts if x > 0)
    for seq, (t0, t1, cpu0) in enumerate(windows):
        rtt = rtts[seq] if aligned else (t1 - t0) / 1000
        share: collections.Counter = collections.Counter()
        state, cpu, since = "running", cpu0, t0
        lo, hi = bisect.bisect_left(ev_times, t0), bisect.bisect_right(ev_times, t1)
        worker, worker_cpu = worker_state_at(lo)
        runtime = collections.Counter()  # ns each ran by the scheduler's clock, which leaves steal out
        worker_ran_on: set[int] = set()
        softirq_at = None
        picked_over_ping = False

        def close(t):
            """Charges [since, t) to ping's state, or while ping sleeps to the worker's."""
            if t <= since:
                return
            if state == "running":
                share["ping running"] += t - since
            elif state == "waking":
                share["ping waking (IPI to its vCPU)"] += t - since
            elif state != "asleep":
                split(cpu, since, t, share, "ping runnable: ")
            elif worker == "running":
                share["worker running"] += t - since
            elif worker == "runnable" and worker_cpu is not None:
                split(worker_cpu, since, t, share, "worker runnable: ")
            elif worker == "waking":
                share["worker waking (IPI to its vCPU)"] += t - since
            else:
                share[f"ping asleep, worker {worker}"] += t - since

        for t, ecpu, comm, tid, ev, rest in evs[lo:hi]:
            f = fields(rest)
            if ev == "sched:sched_switch":
                nxt = re.search(r"next_pid=(\d+)", rest)
                prev, nxt = int(f.get("prev_pid", -1)), int(nxt.group(1)) if nxt else -1
                runnable = f.get("prev_state", "").startswith("R")
                if prev == ping:
                    close(t)
                    state, cpu, since = ("preempted" if runnable else "asleep"), ecpu, t
                if nxt == ping:
                    close(t)
                    state, cpu, since = "running", ecpu, t
                if prev in worker_tids:
                    close(t)
                    since, worker = t, ("runnable" if runnable else "asleep")
                    if state == "preempted" and ecpu == cpu and nxt not in (ping, 0, -1):
                        # The fair class' pick when the worker leaves: a task that ran
                        # less than ping since both became runnable wins it (EEVDF).
                        picked_over_ping = True
                if nxt in worker_tids:
                    close(t)
                    since, worker, worker_cpu = t, "running", ecpu
                    worker_ran_on.add(ecpu)
            elif ev == "sched:sched_stat_runtime":
                pid = int(f.get("pid", -1))
                if pid == ping or pid in worker_tids:
                    runtime["ping" if pid == ping else "worker"] += int(f.get("runtime", 0))
            elif ev == "sched:sched_waking" and int(f.get("pid", -1)) in worker_tids and worker == "asleep":
                close(t)
                since, worker = t, "waking"
            elif ev == "sched:sched_waking" and int(f.get("pid", -1)) == ping and state == "asleep":
                close(t)
                state, since = "waking", t
            elif ev == "sched:sched_wakeup":
                pid = int(f.get("pid", -1))
                if pid == ping and state in ("asleep", "waking"):
                    close(t)
                    state, cpu, since = "woken", int(f.get("target_cpu", ecpu)), t
                if pid in worker_tids and worker in ("asleep", "waking"):
                    close(t)
                    since, worker, worker_cpu = t, "runnable", int(f.get("target_cpu", ecpu))
            elif ev == "sched:sched_migrate_task":
                pid = int(f.get("pid", -1))
                if pid == ping and state != "running":
                    close(t)
                    cpu, since = int(f.get("dest_cpu", cpu)), t
                elif pid in worker_tids and worker == "runnable":
                    close(t)
                    since, worker_cpu = t, int(f.get("dest_cpu", worker_cpu))
            elif ev == "irq:softirq_entry" and state == "running" and ecpu == cpu:
                softirq_at = t
            elif ev == "irq:softirq_exit" and softirq_at is not None and ecpu == cpu:
                share["softirq"] += t - softirq_at
                softirq_at = None
        close(t1)
        share["ping running"] = max(0, share["ping running"] - share["softirq"])
        stalls = silences(t0, t1) if dense else []
        for _, ns, _, whose in stalls:
            for key in (("ping running",) if whose == "ping" else ("worker running", "ping runnable: ferry-worker")):
                taken = min(ns, share[key])
                share[key] -= taken
                ns -= taken
                share[f"host stall ({whose}'s vCPU silent)"] += taken
        # The scheduler's clock stops while the hypervisor runs something else (steal): a task's
        # wall time on a CPU beyond the runtime it was charged is steal (or an interrupt). The
        # first charge may include time before the window, so this undercounts, never over.
        # A stretch still running at t1 is charged at its end: follow it there.
        beyond = collections.Counter()
        for who_, tids, running in (("ping", {ping}, state == "running"), ("worker", worker_tids, worker == "running")):
            if not running:
                continue
            for t, ecpu, comm, tid, ev, rest in evs[hi:hi + 20_000]:
                f = fields(rest)
                if ev == "sched:sched_stat_runtime" and int(f.get("pid", -1)) in tids:
                    runtime[who_] += int(f.get("runtime", 0))
                elif ev == "sched:sched_switch" and int(f.get("prev_pid", -1)) in tids:
                    beyond[who_] = t - t1
                    break
        for key, who_ in (("ping running", "ping"), ("worker running", "worker")):
            if not charged:
                break  # a trace without the scheduler's charges
            stolen = min(share[key], max(0, share[key] + beyond[who_] - runtime[who_]))
            if stolen > 20_000:
                share[key] -= stolen
                share[f"steal ({who_}'s vCPU)"] += stolen
        if worker_ran_on == {cpu0}:
            same_cpu += 1
            placed["on ping's CPU"].append(rtt)
        elif worker_ran_on:
            placed["on the other CPU"].append(rtt)
        if rtt <= threshold:
            continue
        # Merge the worker's and ping's waits by cause.
        causes: collections.Counter = collections.Counter()
        for key, ns in share.items():
            if key.endswith(": ferry-worker") or key == "worker running":
                causes["Ferry's worker running"] += ns
            elif key.endswith(": Ferry's other threads"):
                causes["Ferry's other threads"] += ns
            elif key.endswith(": idle") or " waking (IPI" in key:
                causes["an idle vCPU waking (IPI)"] += ns
            elif key.startswith("steal"):
                causes["steal"] += ns
            elif key.startswith("host stall"):
                causes["host stall"] += ns
            elif key.endswith(": ksoftirqd") or key == "softirq":
                causes["softirq"] += ns
            elif key.startswith("worker runnable: "):
                causes["other task on the worker's CPU: " + key.split(": ", 1)[1]] += ns
            elif ": " in key:
                where = "picked over ping after the worker ran" if picked_over_ping else "other task on ping's CPU"
                causes[f"{where}: " + key.split(": ", 1)[1]] += ns
            elif key.startswith("ping asleep"):
                causes["worker asleep"] += ns
            else:
                causes[key] += ns
        cls = causes.most_common(1)[0][0] if causes else "?"
        detail = {}
        if dense:
            ping_calls = calls({ping}, t0, t1)
            worker_calls = calls(worker_tids, t0, t1)
            ping_calls = [c for c in ping_calls if c[0] != "recvfrom"]  # its wait for the reply
            if ping_calls:
                name, ns = max(ping_calls, key=lambda x: x[1])
                detail["ping's longest call"] = f"{name} {ns / 1000:.0f}"
            if worker_calls:
                counted = collections.Counter(name for name, _ in worker_calls)
                name, ns = max(worker_calls, key=lambda x: x[1])
                detail["worker's calls"] = " ".join(f"{n}x{c}" for n, c in counted.most_common())
                detail["worker's longest call"] = f"{name} {ns / 1000:.0f}"
            if stalls:
                detail["silent"] = [f"cpu{c} {whose} {ns / 1000:.0f}" for _, ns, c, whose in stalls]
        slow.append({"seq": seq, "rtt": rtt, "traced": (t1 - t0) / 1000, "cpu": cpu0, "class": cls,
                     "at": t0 / 1e9, "worker_cpus": sorted(worker_ran_on),
                     "steal_ticks_near": trace.steal_near(cpu0, t0, t1), "detail": detail,
                     "share": {k: round(v / 1000, 1) for k, v in share.most_common() if v > 0}})
    classes = collections.Counter(s["class"] for s in slow)
    # The stall probe, free: every silence on a CPU while ping or a worker ran there, whole run.
    run_stalls = silences(windows[0][0], windows[-1][1]) if dense and windows else []
    return {"ping_tid": ping, "windows": len(windows), "same_cpu": same_cpu, "aligned": aligned,
            "stalls": (len(run_stalls), sum(1 for x in run_stalls if x[1] >= 100_000),
                       max((x[1] for x in run_stalls), default=0) / 1000) if dense else None,
            "lost": getattr(trace, "lost", 0),
            "placed": {k: (len(v), sum(v) / len(v) if v else 0.0, sum(1 for x in v if x > threshold))
                       for k, v in placed.items()}, "slow": slow, "classes": classes,
            "steal_ticks": trace.steal_ticks(), "with_steal_near": sum(1 for s in slow if s["steal_ticks_near"]),
            "cgroups": {name: cgroup_of(pid) for name, pid in others.items()}}


def report(result: dict, out: Path) -> str:
    """Writes the per-reply detail to `out`; returns the one-line summary."""
    if "error" in result:
        return result["error"]
    lines = [f"ping tid {result['ping_tid']}, {result['windows']} round trips traced"
             f"{'' if result['aligned'] else ' (events lost: slow replies picked by their traced time)'}, "
             f"Ferry's worker ran only on "
             f"ping's CPU in {result['same_cpu']}; steal per CPU over the "
             f"trace (ticks of {1000 // USER_HZ} ms): {result['steal_ticks']}"]
    for s in result["slow"]:
        lines.append(f"seq {s['seq']:5d} rtt {s['rtt']:8.0f} µs (traced {s['traced']:8.0f}) cpu {s['cpu']} "
                     f"worker on {s['worker_cpus']} "
                     f"steal-near {s['steal_ticks_near']} at {s['at']:.6f} -> {s['class']}: {s['share']}"
                     f"{' ' + str(s['detail']) if s['detail'] else ''}")
    lines.append("cgroups of the other tasks seen: " + ", ".join(f"{k} {v}" for k, v in result["cgroups"].items()))
    out.write_text("\n".join(lines) + "\n")
    summary = "; ".join(f"{n} {c}" for c, n in result["classes"].most_common())
    placed = ", ".join(f"{k} {n} (avg {avg:.1f} µs, {over} slow)" for k, (n, avg, over) in result["placed"].items() if n)
    stalls = "" if result["stalls"] is None else \
        f"; silent stretches while ping/worker ran: {result['stalls'][0]} (>= 100 µs {result['stalls'][1]}, " \
        f"longest {result['stalls'][2]:.0f} µs)"
    lost = f"; {result['lost']} EVENTS DROPPED" if result["lost"] else ""
    return (f"{'' if result['aligned'] else 'EVENTS LOST, by traced time; '}worker {placed or 'not seen'}; "
            f"{len(result['slow'])} slow: {summary or 'none'}; with steal near: {result['with_steal_near']}; "
            f"steal over the run {result['steal_ticks']} ticks{stalls}{lost}")


if __name__ == "__main__":
    # Again, from a --trace or --explain run's files: tools/latency_trace.py DIR/round1-ferry-default
    import json
    import sys
    base = Path(sys.argv[1])
    saved = json.loads(base.with_suffix(".json").read_text())
    data = base.with_suffix(".data")
    trace = KernelTrace(data, set(saved["workers"])) if saved.get("kind") == "explain" else Trace(data)
    print(report(attribute(trace, saved["rtts"], set(saved["workers"]), set(saved.get("ferry", []))),
                 base.with_suffix(".txt")))
