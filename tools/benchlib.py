"""Shared pieces of Ferry's benchmarks (tools/bench-vhost.py, bench-switch.py, bench-uplink.py).

* machine load: how busy the CPUs are, how much of it was someone else's;
* `Tool`: one of our own C peers (tools/*.c), built on demand into .build/tools, run in its
  own process group with its `KEY k=v ...` output lines parsed;
* `VethLink`: a veth pair between two network namespaces of the benchmark's own, and
  `in_netns()` to start a harness process (Ferry, testpmd) inside one;
* the driver's common parts: run options, SIGTERM, the least disturbed of a few attempts,
  progress lines and per-cell summaries;
* counter sampling, testpmd port lookup, small formatting helpers.

Process control (testpmd, Ferry, cleanup on exit) is Tests/Integration/harness.py's.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "Integration"))
import harness as h  # noqa: E402

TOOLS_SRC = REPO / "tools"
TOOLS_BUILD = REPO / ".build" / "tools"
NOISY = 0.10  # other processes' CPU use during a measurement that marks it noisy


# --------------------------------------------------------------------------- machine load


def cpu_busy_fraction(interval: float = 1.0) -> float:
    def snap():
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return sum(vals), idle
    t0, i0 = snap()
    time.sleep(interval)
    t1, i1 = snap()
    total = t1 - t0
    return 0.0 if total <= 0 else 1.0 - (i1 - i0) / total


def busy_jiffies() -> int:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + sum(v[5:8])  # user nice system irq softirq steal


def proc_jiffies(pids) -> int:
    total = 0
    for pid in pids:
        if pid is None:
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                data = f.read()
            fields = data[data.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])  # utime stime, all threads
        except (OSError, ValueError, IndexError):
            pass
    return total


def wait_idle(limit: float, max_busy: float = 0.10) -> float:
    """Wait up to `limit` seconds for the machine to be idle; return the last busy fraction."""
    deadline = time.monotonic() + limit
    busy = cpu_busy_fraction(0.5)
    while busy > max_busy and time.monotonic() < deadline:
        busy = cpu_busy_fraction(1.0)
    return busy


class OtherLoad:
    """CPU time used by anything but `pids` between start() and stop(), in CPUs; and, when
    `backend` (one of `pids`) is given, the CPU time the back-end itself got (`backend_cpus`):
    on a loaded machine a back-end's Mpps falls with the CPU it is given, so its rate per CPU
    it had still compares two back-ends when the plain rate no longer can."""

    def __init__(self, pids, backend: Optional[int] = None):
        self.pids = [p for p in pids if p is not None]
        self.backend = backend
        self.backend_cpus: Optional[float] = None

    def start(self) -> "OtherLoad":
        self.t0, self.b0, self.o0 = time.monotonic(), busy_jiffies(), proc_jiffies(self.pids)
        self.be0 = proc_jiffies([self.backend])
        return self

    def stop(self) -> float:
        hz = os.sysconf("SC_CLK_TCK")
        seconds = max(time.monotonic() - self.t0, 1e-3)
        busy, ours = busy_jiffies() - self.b0, proc_jiffies(self.pids) - self.o0
        if self.backend is not None:
            self.backend_cpus = (proc_jiffies([self.backend]) - self.be0) / hz / seconds
        return max(0.0, (busy - ours) / hz / seconds)


# --------------------------------------------------------------------------- our C peers


def build_tool(name: str, dpdk: bool = False) -> str:
    """Compile tools/NAME.c into .build/tools/NAME when the binary is missing or older than the
    source; returns its path. Raises HarnessError with the compiler's complaint."""
    src = TOOLS_SRC / f"{name}.c"
    out = TOOLS_BUILD / name
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return str(out)
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise h.HarnessError("no C compiler (cc/gcc/clang) to build " + str(src))
    flags: list[str] = []
    if dpdk:
        res = subprocess.run(["pkg-config", "--cflags", "--libs", "libdpdk"],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise h.HarnessError("pkg-config libdpdk failed (install dpdk-dev): "
                                 + res.stderr.strip())
        flags = res.stdout.split()
    TOOLS_BUILD.mkdir(parents=True, exist_ok=True)
    cmd = [cc, "-O2", "-Wall", "-pthread", "-o", str(out), str(src)] + flags
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise h.HarnessError(f"building {name} failed:\n$ {' '.join(cmd)}\n{res.stderr}")
    return str(out)


_KV = re.compile(r"(\w+)=(\S+)")


def _num(v: str):
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


class Tool(h.TrackedProcess):
    """One of our C peers: prints `READY ...`, `PPS t=.. rx=.. tx=..` lines once a second and a
    `TOTAL ...` line at the end. Output goes to a log and is parsed as it arrives."""

    def __init__(self, cmd: list[str], log_path: str, name: str = "tool"):
        super().__init__()
        self.name = name
        self.cmd = cmd
        self.log_path = log_path
        self.ready = False
        self.samples: list[dict] = []   # each PPS line, with "at": time.monotonic()
        self.lines: dict[str, dict] = {}  # last line of every other kind (READY, LEARN, TOTAL)
        self._cv = threading.Condition()
        self._reader: Optional[threading.Thread] = None
        self._stopped = False

    def start(self, wait_ready: bool = True, timeout: float = 30.0) -> "Tool":
        with open(self.log_path, "ab") as log:
            log.write(("$ " + " ".join(self.cmd) + "\n").encode())
        self._spawn(self.cmd, stdout=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"read-{self.name}")
        self._reader.start()
        if wait_ready:
            try:
                self.wait_for("READY", timeout)
            except BaseException:
                self.kill()
                raise
        return self

    def _read(self):
        with open(self.log_path, "ab", buffering=0) as log:
            for raw in self.proc.stdout:
                log.write(raw)
                line = raw.decode(errors="replace").strip()
                key, _, rest = line.partition(" ")
                if not key.isupper():
                    continue
                fields = {k: _num(v) for k, v in _KV.findall(rest)}
                with self._cv:
                    if key == "PPS":
                        fields["at"] = time.monotonic()
                        self.samples.append(fields)
                    else:
                        self.lines[key] = fields
                    self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def wait_for(self, key: str, timeout: float) -> dict:
        """Until a line starting with KEY arrived; its fields."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while key not in self.lines:
                if self.exited() and not (self._reader and self._reader.is_alive()):
                    raise h.HarnessError(f"{self.name} exited ({self.returncode()}) before "
                                         f"printing {key}\n{self.log_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise h.HarnessError(f"{self.name} printed no {key} within {timeout:.0f}s\n"
                                         f"{self.log_tail()}")
                self._cv.wait(min(left, 0.2))
            return dict(self.lines[key])

    def values(self, key: str, since: float = 0.0) -> list:
        with self._cv:
            return [s[key] for s in self.samples if s["at"] > since and key in s]

    def wait(self, timeout: float) -> Optional[int]:
        """Wait for a tool that stops by itself (its duration ran out)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        return self.stop()

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        if self._stopped:
            return self.proc.returncode if self.proc else None
        rc = self._terminate(signal.SIGINT, timeout)
        if self._reader is not None:
            self._reader.join(5)
        self._after_exit()
        return rc

    def _after_exit(self):
        self._stopped = True


# --------------------------------------------------------------------------- counters


def counter_rates(read, duration: float) -> list[float]:
    """Per-second rates of a counter over `duration` seconds."""
    rates = []
    v0, t0 = read(), time.monotonic()
    for _ in range(max(1, int(round(duration)))):
        time.sleep(1.0 - (time.monotonic() - t0) % 1.0 if rates else 1.0)
        v1, t1 = read(), time.monotonic()
        rates.append((v1 - v0) / (t1 - t0))
        v0, t0 = v1, t1
    return rates


VHOST_MAC = re.compile(r"Port (\d+): 56:48:4F:53:54")  # net_vhost's MACs spell "VHOST"


def dpdk_vhost_port(be) -> int:
    """The port number testpmd gave its net_vhost device (probe order is not the --vdev order
    in every DPDK version), 0 when its log does not say."""
    m = VHOST_MAC.search(be.log_text())
    return int(m.group(1)) if m else 0


# --------------------------------------------------------------------------- namespaces


NETNS_PREFIX = "ub-"  # every namespace VethLink creates; cleanup_stale_netns() knows them by it


def netns_cmd(ns: Optional[str], cmd: list[str]) -> list[str]:
    """cmd run inside network namespace ns (as is when ns is None). `ip netns exec` execs the
    command in place, so the pid and process group the harness tracks are the command's own."""
    return (["ip", "netns", "exec", ns] if ns else []) + cmd


def in_netns(proc, ns: Optional[str]):
    """Make an unstarted harness process (h.Ferry, h.Testpmd) start inside namespace ns."""
    if ns:
        base = proc.command
        proc.command = lambda: netns_cmd(ns, base())
    return proc


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise h.HarnessError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def cleanup_stale_netns():
    """Namespaces a killed run of ours left behind (named PREFIX...-PID, PID no longer alive):
    deleting a namespace deletes the veth end inside it, and with it its peer."""
    for path in glob.glob(f"/run/netns/{NETNS_PREFIX}*"):
        name = os.path.basename(path)
        pid = name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            _ip("netns", "del", name, check=False)


class VethLink:
    """A veth pair `a`/`b` between two fresh namespaces `{PREFIX}{a_tag}-PID` and
    `{PREFIX}{b_tag}-PID`, made inside them (no interface ever appears in the root namespace,
    where other work may be running), one RX and one TX queue per end (an AF_XDP socket sees
    only its own queue: with one queue nothing can bypass it), fixed MACs, IPv6 off (no
    RS/DAD/MLD frames of the kernel's own in the counts), both ends up.

    stat(end, key) reads /sys/class/net/IF/statistics/KEY of either end. /sys shows the
    namespace of whoever mounted it, so it is read through /proc/PID/root of a holder process
    that `ip netns exec` started in each namespace with that namespace's /sys mounted: a plain
    file read per sample, no process started while measuring."""

    def __init__(self, a: str, b: str, a_mac: str, b_mac: str, mtu: int = 1500,
                 a_tag: str = "hv", b_tag: str = "lan", log_dir: str = "/tmp"):
        pid = os.getpid()
        self.ifname = {"a": a, "b": b}
        self.ns = {"a": f"{NETNS_PREFIX}{a_tag}-{pid}", "b": f"{NETNS_PREFIX}{b_tag}-{pid}"}
        self.mac = {"a": a_mac, "b": b_mac}
        self.mtu = mtu
        self.log_dir = log_dir
        self._holders: dict[str, Tool] = {}
        self._files: dict = {}

    def up(self) -> "VethLink":
        try:
            for end, ns in self.ns.items():
                if os.path.exists(f"/run/netns/{ns}"):
                    _ip("netns", "del", ns, check=False)  # our own, from an aborted measurement
                _ip("netns", "add", ns)
                subprocess.run(netns_cmd(ns, ["sysctl", "-qw",
                                              "net.ipv6.conf.all.disable_ipv6=1",
                                              "net.ipv6.conf.default.disable_ipv6=1"]),
                               capture_output=True)
            a, b = self.ifname["a"], self.ifname["b"]
            _ip("-n", self.ns["a"], "link", "add", a, "numtxqueues", "1", "numrxqueues", "1",
                "type", "veth", "peer", "name", b, "netns", self.ns["b"],
                "numtxqueues", "1", "numrxqueues", "1")
            for end in ("a", "b"):
                _ip("-n", self.ns[end], "link", "set", self.ifname[end], "address",
                    self.mac[end], "mtu", str(self.mtu), "up")
            for end, ns in self.ns.items():
                holder = Tool(netns_cmd(ns, ["sleep", "infinity"]),
                              os.path.join(self.log_dir, f"netns-{end}.log"), f"netns-{end}")
                holder.start(wait_ready=False)
                self._holders[end] = holder
                h.wait_until(lambda: os.path.exists(self._sysfs(end)), 5,
                             f"{self.ifname[end]} in {ns}'s /sys")
        except BaseException:
            self.close()
            raise
        return self

    def _sysfs(self, end: str, key: str = "") -> str:
        base = f"/proc/{self._holders[end].pid}/root/sys/class/net/{self.ifname[end]}"
        return f"{base}/statistics/{key}" if key else base

    def stat(self, end: str, key: str) -> int:
        with open(self._sysfs(end, key)) as f:
            return int(f.read())

    def stats(self, end: str, keys) -> dict:
        return {k: self.stat(end, k) for k in keys}

    def close(self):
        for holder in self._holders.values():
            holder.stop()
        self._holders.clear()
        for ns in self.ns.values():
            if os.path.exists(f"/run/netns/{ns}"):
                _ip("netns", "del", ns, check=False)


# --------------------------------------------------------------------------- driver


def add_run_options(ap: argparse.ArgumentParser, sizes: str = "64,1518",
                    sizes_help: Optional[str] = None):
    """The options every benchmark takes: rounds, timing, sizes, noise handling, output."""
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 round of 3 s")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--sizes", default=sizes, help=sizes_help or "frame sizes without FCS")
    ap.add_argument("--wait-idle", type=float, default=20.0, metavar="S",
                    help="before each measurement wait up to S s for an idle machine")
    ap.add_argument("--retry-noisy", type=int, default=2, metavar="N",
                    help="repeat a measurement up to N times while other processes disturb it")
    ap.add_argument("--json", metavar="PATH", help="also write all samples as JSON")
    ap.add_argument("--keep-logs", metavar="DIR", help="copy every process log to DIR")


def add_other_option(ap: argparse.ArgumentParser):
    """--other: a second Ferry binary (the build before a change) run as back-end `other`,
    alternating with this one in every round, so that the two are compared under one load."""
    ap.add_argument("--other", metavar="PATH",
                    help="also run this Ferry binary as back-end 'other' (e.g. the build before a "
                         "change), alternating with FERRY_BIN's in every round")


# The back-ends that are a Ferry: this build (FERRY_BIN), and --other's.
FERRIES = ("ferry", "other")


def with_other(impls: list[str], args) -> list[str]:
    """impls with back-end `other` (--other's binary) right after `ferry`, so that in every
    round the two Ferries run next to each other; impls unchanged without --other or ferry."""
    if not args.other or "ferry" not in impls or "other" in impls:
        return list(impls)
    at = impls.index("ferry") + 1
    return impls[:at] + ["other"] + impls[at:]


def ferry_binary_of(impl: str, args) -> Optional[str]:
    """The binary a Ferry back-end runs: --other's for `other`, else FERRY_BIN's (None)."""
    return args.other if impl == "other" else None


def print_other_table(summary: list[dict], label_of: Callable[[dict], str], other: str,
                      width: int = 32):
    """This Ferry against --other's (the binary `other`), row by row: best and median and
    their ratios, and which two binaries they were."""
    print()
    print(f"{'workload':{width}} {'size':>5}  {'this best':>9} {'other best':>10} {'this/other':>10}  "
          f"{'this med':>8} {'other med':>9} {'this/other':>10}")
    for row in summary:
        print(f"{label_of(row):{width}} {row['size']:>5}  {fmt(row['ferry_best'])} "
              f"{fmt(row['other_best'], 10)} {fmt(ratio(row['ferry_best'], row['other_best']), 10)}  "
              f"{fmt(row['ferry_median'], 8)} {fmt(row['other_median'])} "
              f"{fmt(ratio(row['ferry_median'], row['other_median']), 10)}{noisy_note(row)}")
    print(f"(this: {h.ferry_binary()}; other: {other})")


def parse_run_options(ap: argparse.ArgumentParser) -> argparse.Namespace:
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 3.0, 1.0
    args.size_list = [int(s) for s in args.sizes.split(",")]
    return args


def begin_run(header: str):
    """SIGTERM stops a run the way Ctrl-C does, so its `finally:` still cleans up; the header
    line, and a warning when others already keep the machine busy."""
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    busy = cpu_busy_fraction()
    print(header, flush=True)
    if busy > 0.10:
        print(f"# WARNING: the machine is {busy:.0%} busy before the benchmark starts; "
              "numbers will be noisy", flush=True)


class Unsupported(Exception):
    """The back-end cannot run this workload at all (e.g. a Ferry without the port kind the
    workload needs): reported as NOT RUN, not as a failure of the measurement."""


def least_noisy(args, tag: str, measure: Callable[[h.Lab], dict],
                notes: Callable[[dict], list], lab_tag: str = "bench") -> dict:
    """measure(lab) -> {"mpps", "samples", "other_cpus", ...}, each attempt with a Lab of its
    own, repeated up to --retry-noisy times while other processes disturb it (after waiting up
    to --wait-idle for a quiet machine each time); the least disturbed attempt. A failure
    returns {"error"} at once, with the logs' tails printed; Unsupported adds "unsupported".
    measure may put callables in lab.after_close: they run once the Lab's processes are gone
    (an interface they used can then be deleted)."""
    best = None
    for i in range(args.retry_noisy + 1):
        if args.wait_idle > 0:
            wait_idle(args.wait_idle)
        attempt_tag = tag.replace(" B ", " B (retry) ", 1) if i else tag
        lab = h.Lab(lab_tag, keep_logs=args.keep_logs)
        lab.after_close = []
        try:
            m = measure(lab)
            report(attempt_tag, m, notes(m))
        except Unsupported as exc:
            print(f"{attempt_tag}: NOT RUN: {exc}", file=sys.stderr, flush=True)
            return {"error": str(exc), "unsupported": True}
        except Exception as exc:
            print(f"{attempt_tag}: FAILED {type(exc).__name__}: {exc}\n{lab.logs(20)}",
                  file=sys.stderr, flush=True)
            return {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            lab.close()
            for cleanup in lab.after_close:
                cleanup()
        if best is None or m["other_cpus"] < best["other_cpus"]:
            best = m
        if m["other_cpus"] <= NOISY:
            break
    return best


def report(tag: str, m: dict, notes: list[str]):
    """One measurement's progress line: its rate, per-second readings, cross-checks, load."""
    load = f"other load {m['other_cpus']:.2f} CPU" + (" (NOISY)" if m["other_cpus"] > NOISY
                                                       else "")
    if m.get("backend_cpus"):
        notes = notes + [f"back-end had {m['backend_cpus']:.2f} CPU "
                         f"({m['mpps'] / m['backend_cpus']:.2f} Mpps per back-end CPU)"]
    print(f"{tag}: {m['mpps']:.3f} Mpps  per-second {[round(s / 1e6, 3) for s in m['samples']]}"
          f"; {'; '.join(notes + [load])}", flush=True)


def cpu_state() -> str:
    """The machine's state as tools/cpu-state.c measures it (how long a cache line takes between
    CPU 0 and CPU 1, each CPU's effective clock), or why it could not be measured."""
    try:
        res = subprocess.run([build_tool("cpu-state")], capture_output=True, text=True, timeout=60)
        return res.stdout.strip() or f"cpu-state failed: {res.stderr.strip()}"
    except (h.HarnessError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cpu-state not run: {exc}"


def run_rounds(rounds: int, cells: list, impls_of: Callable, run: Callable) -> tuple[dict, bool]:
    """run(rnd, *cell, impl) for every cell (a tuple such as (workload, size)) and each of
    impls_of(cell), round after round, the back-ends' order reversed in odd rounds so that a
    drift of the machine during a round hits them alike. Returns ({cell + (impl,): [measurement
    per round]}, whether any failed). Ctrl-C (and SIGTERM, see begin_run) ends the rounds early;
    every process the harness started is stopped either way."""
    results: dict = {}
    failed = False
    try:
        for rnd in range(rounds):
            # The machine is bimodal (DPDK's own rate is one marker): say which state each round met.
            machine = cpu_state()
            print(f"# round {rnd + 1} machine: {machine}", flush=True)
            for cell in cells:
                order = list(impls_of(cell))
                if rnd % 2:
                    order.reverse()
                for impl in order:
                    m = run(rnd, *cell, impl)
                    failed |= "error" in m
                    m.setdefault("machine", machine)
                    results.setdefault(tuple(cell) + (impl,), []).append(m)
    except KeyboardInterrupt:
        print("# interrupted", file=sys.stderr)
        failed = True
    finally:
        h.cleanup_all()
    return results, failed


def print_round_table(results: dict, cells: list, label_of: Callable[[tuple], str],
                      slow_below: Optional[dict] = None, width: int = 32):
    """Round by round, Ferry (and --other's) against DPDK measured in the same round, so that
    each ratio compares the back-ends in one state of the machine; DPDK's own rate is the
    marker of that state, and where slow_below[cell] gives the DPDK rate (Mpps) under which
    the quiet machine is in its slow state, the round is labelled slow or fast (noisy when a
    measurement of the round had other work)."""
    print()
    print(f"{'round by round':{width}} {'size':>5} {'round':>5}  {'Ferry':>6} {'other':>6} {'DPDK':>6}  "
          f"{'Ferry/DPDK':>10} {'other/DPDK':>10} {'per CPU':>7}  state (DPDK's rate; machine)")
    for cell in cells:
        rows = {impl: results.get(tuple(cell) + (impl,), []) for impl in ("ferry", "other", "dpdk")}
        for rnd in range(max((len(ms) for ms in rows.values()), default=0)):
            got = {impl: ms[rnd] for impl, ms in rows.items() if rnd < len(ms)}
            rate = {impl: m.get("mpps") for impl, m in got.items()}
            dpdk = rate.get("dpdk")
            noisy = any(m.get("other_cpus", 0) > NOISY for m in got.values())
            bound = (slow_below or {}).get(tuple(cell))
            if noisy:
                state = "noisy"
            elif dpdk is None or bound is None:
                state = "-"
            else:
                state = "slow" if dpdk < bound else "fast"
            machine = next((m["machine"] for m in got.values() if "machine" in m), "")
            print(f"{label_of(cell):{width}} {cell[1]:>5} {rnd + 1:>5}  {fmt(rate.get('ferry'), 6)} "
                  f"{fmt(rate.get('other'), 6)} {fmt(dpdk, 6)}  {fmt(ratio(rate.get('ferry'), dpdk), 10)} "
                  f"{fmt(ratio(rate.get('other'), dpdk), 10)} "
                  f"{fmt(ratio(per_backend_cpu(got.get('ferry')), per_backend_cpu(got.get('dpdk'))), 7)}"
                  f"  {state}; {machine}")
    print("(per CPU: Ferry/DPDK of Mpps per CPU second each back-end process had; where the plain "
          "ratio is noisy, this one still compares the two)")


def per_backend_cpu(m: Optional[dict]) -> Optional[float]:
    """A measurement's rate per CPU its back-end had, when OtherLoad measured the back-end."""
    if not m or not m.get("mpps") or not m.get("backend_cpus"):
        return None
    return m["mpps"] / m["backend_cpus"]


def summarize(row: dict, runs: dict) -> dict:
    """row + IMPL_best / IMPL_median / IMPL_rounds for each impl's measurements (impl -> list)
    and how many of them were noisy."""
    for impl, ms in runs.items():
        vals = [m["mpps"] for m in ms if "mpps" in m]
        row[f"{impl}_best"] = max(vals) if vals else None
        row[f"{impl}_median"] = h.median(vals) if vals else None
        row[f"{impl}_rounds"] = vals
    row["noisy_rounds"] = sum(1 for ms in runs.values() for m in ms
                              if m.get("other_cpus", 0) > NOISY)
    return row


def ratio(a, b):
    return a / b if a and b else None


def noisy_note(row: dict) -> str:
    return f"  ({row['noisy_rounds']} noisy)" if row["noisy_rounds"] else ""


# --------------------------------------------------------------------------- formatting


def fmt(v, width=9):
    return f"{v:>{width}.2f}" if isinstance(v, (int, float)) else f"{v or '-':>{width}}"
