"""Process helpers for Ferry's integration tests and benchmark (Python 3 stdlib only).

Two kinds of peer processes are driven from here:

* Ferry itself (``ferry run --port ...``), started in its own process group with stdout and
  stderr in a log file; ``Ferry.start()`` returns once the log shows ``ferry: ready``.
* ``dpdk-testpmd`` (DPDK 22.11), either as a virtio-user *front-end* (``virtio_user()``) that
  talks to Ferry over a vhost-user socket, or as a vhost-user *back-end* (``vhost_backend()``),
  the reference the benchmark compares Ferry with.

Facts about testpmd that these helpers rely on (checked on Debian 12, DPDK 22.11):

* testpmd needs two lcores: the main lcore (which only sleeps and prints stats when
  ``--stats-period`` is given) and one forwarding lcore. ``-l 0`` alone fails with "No cores
  defined for forwarding", so a peer is pinned to one CPU with ``--lcores 0@CPU,1@CPU``.
* ``--no-huge -m 512`` works for virtio-user: the no-huge heap is a single memfd, which
  virtio-user can pass to the back-end. ``--single-file-segments`` is what makes hugepage mode
  work (one fd per memseg list instead of one per 2 MiB page); it is harmless without hugepages
  and always given. ``--in-memory`` cannot be combined with ``--no-huge`` (EAL refuses). The
  default mbuf pool (155456 mbufs) does not fit in 512 MiB: ``--total-num-mbufs`` is always set.
* ``--mbuf-size`` must come before ``--txpkts`` or testpmd rejects a ``--txpkts`` bigger than
  the default data room and silently sends 64 B frames.
* virtio-user has no ``mtu=`` devarg in 22.11 (path, mac, cq, queue_size, queues, iface, server,
  mrg_rxbuf, in_order, packed_vq, speed, vectorized); ``mtu`` here becomes ``--max-pkt-len``.
* virtio-user with ``server=1`` blocks in probe until a back-end connects: start it, wait for
  its socket to appear, then start the back-end.
* With ``--stats-period`` testpmd ignores stdin (run it with stdin from /dev/null), prints
  ``Rx-pps:``/``Tx-pps:`` every period and the forward totals on SIGINT (exit takes ~1 s).
  Forward totals count from forwarding start; rxonly peers get ``--no-flush-rx`` so that frames
  queued before forwarding starts are counted rather than silently flushed.
* txonly cannot stop after N packets, but interactive mode can send an exact number of bursts:
  ``start tx_first N`` sends N bursts of ``--burst`` frames and then runs the configured forward
  mode (use rxonly). ``interactive=True`` drives testpmd through stdin for that.
* testpmd leaves ``/var/run/dpdk/<file-prefix>`` behind, and in hugepage mode its
  ``<prefix>map_*`` files in hugetlbfs (holding the pages); both are removed on stop.

Every process started here is tracked; ``cleanup_all()`` (also registered with atexit) kills
what is left and removes runtime directories, sockets and hugepage files.
"""

from __future__ import annotations

import atexit
import ctypes
import glob
import itertools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONTROL = "/run/ferry/ferry.sock"
DPDK_RUNTIME = Path("/var/run/dpdk")

_prefix_counter = itertools.count()
_live: "set[_Process]" = set()
_live_lock = threading.Lock()


class HarnessError(RuntimeError):
    pass


class FerryError(HarnessError):
    pass


class TestpmdError(HarnessError):
    pass


# --------------------------------------------------------------------------- environment


def ferry_binary() -> str:
    return os.environ.get("FERRY_BIN") or str(REPO / ".build" / "release" / "ferry")


def testpmd_binary() -> Optional[str]:
    return os.environ.get("FERRY_TESTPMD") or shutil.which("dpdk-testpmd")


def environment_problems(need_ferry: bool = True, need_testpmd: bool = True) -> list[str]:
    """Reasons these tests cannot run here; empty when all is well."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not root: vhost-user peers and dpdk-testpmd need root (run as root)")
    if need_testpmd:
        tp = testpmd_binary()
        if not tp or not os.access(tp, os.X_OK):
            problems.append("dpdk-testpmd not found: install Debian's dpdk-dev package "
                            "(apt-get install dpdk-dev) or set FERRY_TESTPMD")
    if need_ferry:
        fb = ferry_binary()
        if not os.access(fb, os.X_OK):
            problems.append(f"Ferry binary {fb} missing or not executable: run "
                            "`swift build -c release` or set FERRY_BIN")
    return problems


# --------------------------------------------------------------------------- small utilities


def wait_until(pred: Callable[[], object], timeout: float, desc: str, interval: float = 0.1):
    """Poll pred() until it returns something truthy; return that, or raise after timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = pred()
            if value:
                return value
        except HarnessError:
            raise
        except Exception as exc:  # keep polling; report the last error on timeout
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {desc}{extra}")
        time.sleep(interval)


def wait_stable(get: Callable[[], object], quiet: float = 1.0, timeout: float = 30.0,
                interval: float = 0.2, desc: str = "counters to settle"):
    """Poll get() until its value has not changed for `quiet` seconds; return that value."""
    deadline = time.monotonic() + timeout
    value = get()
    since = time.monotonic()
    while True:
        time.sleep(interval)
        now_value = get()
        now = time.monotonic()
        if now_value != value:
            value, since = now_value, now
        elif now - since >= quiet:
            return value
        if now >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {desc}; last {value!r}")


def wait_for_socket(path: str, timeout: float = 15.0, proc: "Optional[_Process]" = None):
    def ready():
        if proc is not None and proc.exited():
            raise HarnessError(f"{proc.name} exited (rc={proc.returncode()}) before creating "
                               f"{path}\n{proc.log_tail()}")
        return os.path.exists(path)
    wait_until(ready, timeout, f"socket {path}")


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else 0.0


class Workdir:
    """A short-named temporary directory (unix socket paths are limited to 107 bytes)."""

    def __init__(self, tag: str = "it"):
        self.path = tempfile.mkdtemp(prefix=f"ferry-{tag}-", dir="/tmp")

    def __truediv__(self, name: str) -> str:
        return os.path.join(self.path, name)

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL if the test runner dies, so no busy-poller is orphaned."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _remove(path: Optional[str]):
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- process base


class _Process:
    """A child in its own process group, tracked for cleanup."""

    name = "process"

    def __init__(self):
        self.proc: Optional[subprocess.Popen] = None
        self.log_path: Optional[str] = None
        self.cmd: list[str] = []

    def _spawn(self, cmd: list[str], stdin=subprocess.DEVNULL, stdout=None, env=None):
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_parent, env=env)
        with _live_lock:
            _live.add(self)

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def exited(self) -> bool:
        """Has the process exited? (Does not reap it, so its group can still be signalled.)"""
        if self.proc is None or self.proc.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            self.proc.poll()
            return True
        return info is not None and bool(info.si_pid)

    def running(self) -> bool:
        return not self.exited()

    def returncode(self):
        if self.proc is None:
            return None
        if self.exited():
            return self.proc.poll()  # reaps: only used for messages about a dead process
        return None

    def log_text(self) -> str:
        if not self.log_path:
            return ""
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_text().replace("\x1b[2J", "").replace("\x1b[1;1H", "")
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last lines of {self.log_path} ---\n{tail}"

    def _signal_group(self, sig):
        # Only while the leader is not reaped: its pid (= the group id) cannot be reused until
        # then, so the signal cannot reach anyone else's processes.
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _wait_unreaped(self, timeout: float) -> bool:
        """Wait for the leader to exit without reaping it; True if it did."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.returncode is not None:
                return True
            try:
                info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                self.proc.poll()
                return True
            if info is not None and info.si_pid:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _terminate(self, first_sig=signal.SIGINT, timeout: float = 15.0) -> Optional[int]:
        """Signal the group, wait, escalate to SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self._signal_group(first_sig)
            if not self._wait_unreaped(timeout):
                self._signal_group(signal.SIGKILL)
                self._wait_unreaped(10)
            # Anything else left in the group goes too, then the leader is reaped.
            self._signal_group(signal.SIGKILL)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        with _live_lock:
            _live.discard(self)
        return self.proc.returncode

    def kill(self, cleanup: bool = True):
        """Immediate SIGKILL of the group and (unless cleanup=False: what a crash leaves behind
        stays) cleanup; for teardown after failures."""
        self._signal_group(signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if cleanup:
            self._after_exit()
        with _live_lock:
            _live.discard(self)

    def _after_exit(self):
        pass

    def stop(self):
        raise NotImplementedError


def cleanup_all():
    """Kill every process this module started that is still tracked, and clean up after it."""
    with _live_lock:
        procs = list(_live)
    for p in procs:
        try:
            p.stop()
        except Exception:
            p.kill()


atexit.register(cleanup_all)


# --------------------------------------------------------------------------- Ferry


class Ferry(_Process):
    """`ferry run` with the given --port specs.

    ports: list of SPEC strings (e.g. "vhost:/tmp/x.sock", "sink", "gen:dst=..,src=..,size=64").
    taskset: CPU list for `taskset -c` (the whole process), cpu: Ferry's own --cpu.
    netns: run Ferry inside this network namespace (`ip netns exec NETNS ...`; a unix socket is
    a path, so the control and vhost-user sockets are reachable from every namespace).
    wrapper: commands that exec Ferry (e.g. `prlimit --memlock=..`, `setpriv ...`), run inside
    the namespace. Every one of them execs, so the process's pid is Ferry's own.
    """

    name = "ferry"

    def __init__(self, ports: list[str], control: str, log_path: str, cpu: Optional[int] = None,
                 batch: Optional[int] = None, taskset: Optional[str] = None,
                 extra_args: Iterable[str] = (), binary: Optional[str] = None,
                 env: Optional[dict] = None, netns: Optional[str] = None,
                 wrapper: Iterable[str] = ()):
        super().__init__()
        self.netns = netns
        self.wrapper = list(wrapper)
        self._stopped = False
        self.ports = list(ports)
        self.control = control
        self.log_path = log_path
        self.cpu = cpu
        self.batch = batch
        self.taskset = taskset
        self.extra_args = list(extra_args)
        self.binary = binary or ferry_binary()
        self.env = env

    def command(self) -> list[str]:
        cmd = []
        if self.netns is not None:
            cmd += ["ip", "netns", "exec", self.netns]   # execs: no extra process
        cmd += self.wrapper
        if self.taskset is not None:
            cmd += ["taskset", "-c", str(self.taskset)]
        cmd += [self.binary, "run"]
        for spec in self.ports:
            cmd += ["--port", spec]
        cmd += ["--control", self.control]
        if self.cpu is not None:
            cmd += ["--cpu", str(self.cpu)]
        if self.batch is not None:
            cmd += ["--batch", str(self.batch)]
        return cmd + self.extra_args

    def launch(self) -> "Ferry":
        """Start the process and return at once (start() also waits for 'ferry: ready'); for a
        test that expects Ferry to refuse its configuration."""
        if not os.access(self.binary, os.X_OK):
            raise FerryError(f"Ferry binary {self.binary} missing (build it or set FERRY_BIN)")
        os.makedirs(os.path.dirname(self.control) or ".", exist_ok=True)
        _remove(self.control)
        self._stopped = False
        log = open(self.log_path, "ab")
        try:
            env = dict(os.environ, **(self.env or {}))
            self._spawn(self.command(), stdout=log, env=env)
        finally:
            log.close()
        return self

    def start(self, timeout: float = 20.0) -> "Ferry":
        self.launch()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def wait_ready(self, timeout: float = 20.0):
        def ready():
            if self.exited():
                raise FerryError(f"ferry exited with {self.returncode()} before 'ferry: ready'\n"
                                 f"command: {' '.join(self.cmd)}\n{self.log_tail()}")
            return "ferry: ready" in self.log_text()
        try:
            wait_until(ready, timeout, "'ferry: ready' in Ferry's log")
        except TimeoutError as exc:
            raise FerryError(f"{exc}\ncommand: {' '.join(self.cmd)}\n{self.log_tail()}") from None

    def stats(self) -> dict:
        return ferry_stats(self.control, binary=self.binary)

    def port(self, name: str) -> dict:
        return port_stats(self.stats(), name)

    def ctl(self, *args: str, timeout: float = 10.0) -> dict:
        """`ferry ctl ARGS --json` against this Ferry, parsed."""
        return ferry_ctl(self.control, *args, binary=self.binary, timeout=timeout)

    def ctl_text(self, *args: str, timeout: float = 10.0) -> str:
        """`ferry ctl ARGS` (the table people read) against this Ferry."""
        cmd = [self.binary, "ctl", *args, "--control", self.control]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise FerryError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGINT) -> Optional[int]:
        """Stop with `sig` (SIGINT or SIGTERM: Ferry's orderly shutdown), SIGKILL after
        `timeout`; remove the sockets Ferry owns. Returns the exit code."""
        if self._stopped:
            return self.proc.returncode if self.proc else None
        rc = self._terminate(sig, timeout)
        self._after_exit()
        self._stopped = True
        return rc

    def crash(self) -> Optional[int]:
        """SIGKILL, as a crash or the OOM killer would: nothing of Ferry's is cleaned up after
        it (its vhost-user and control socket files stay, so does whatever it had attached to
        the kernel), and a later stop() does nothing. Returns the exit code (-9)."""
        if self.proc is None or self._stopped:
            return None
        self.kill(cleanup=False)
        self._stopped = True
        return self.proc.returncode

    def _after_exit(self):
        _remove(self.control)
        # Server-mode vhost sockets are Ferry's; client-mode ones belong to the peer.
        for spec in self.ports:
            if spec.startswith("vhost:"):
                fields = spec[len("vhost:"):].split(",")
                if "client" not in fields[1:]:
                    _remove(fields[0])


def ferry_stats(control: Optional[str] = None, binary: Optional[str] = None,
                timeout: float = 10.0) -> dict:
    """`ferry ctl stats --json [--control PATH]`, parsed."""
    return ferry_ctl(control, "stats", binary=binary, timeout=timeout)


def ctl_run(ferry: "Ferry", *args: str) -> subprocess.CompletedProcess:
    """`ferry ctl ARGS` against `ferry`, whatever it answers."""
    cmd = [ferry.binary, "ctl", *args, "--control", ferry.control]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10)


def ctl_ok(ferry: "Ferry", *args: str) -> str:
    """What `ferry ctl ARGS` printed; it must succeed and write nothing to stderr."""
    res = ctl_run(ferry, *args)
    assert res.returncode == 0, f"ferry ctl {' '.join(args)} failed ({res.returncode}): {res.stderr}"
    assert res.stderr == "", f"ferry ctl {' '.join(args)} wrote to stderr: {res.stderr}"
    return res.stdout


def ctl_error(ferry: "Ferry", *args: str) -> str:
    """The error a failing `ferry ctl ARGS` printed (ArgumentParser's "Error: " prefix removed);
    it must exit 1 and print nothing on stdout."""
    res = ctl_run(ferry, *args)
    assert res.returncode == 1, \
        f"ferry ctl {' '.join(args)}: exit {res.returncode}, want 1\nstdout: {res.stdout}\nstderr: {res.stderr}"
    assert res.stdout == "", f"ferry ctl {' '.join(args)} printed on stdout: {res.stdout}"
    err = res.stderr.strip()
    assert err.startswith("Error: "), f"ferry ctl {' '.join(args)}: stderr {err!r}"
    return err[len("Error: "):]


def ferry_ctl(control: Optional[str], *args: str, binary: Optional[str] = None,
              timeout: float = 10.0) -> dict:
    """`ferry ctl ARGS --json [--control PATH]`, parsed."""
    cmd = [binary or ferry_binary(), "ctl", *args, "--json"]
    if control:
        cmd += ["--control", control]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise FerryError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
    try:
        return json.loads(res.stdout)
    except json.JSONDecodeError as exc:
        raise FerryError(f"{' '.join(cmd)} printed invalid JSON ({exc}): {res.stdout[:500]!r}")


def port_stats(stats: dict, name: str) -> dict:
    for p in stats.get("ports", []):
        if p.get("name") == name:
            return p
    names = [p.get("name") for p in stats.get("ports", [])]
    raise KeyError(f"no port {name!r} in Ferry stats (ports: {names})")


def drop_total(port: dict, exclude: Iterable[str] = ("sink",)) -> int:
    """Frames lost on this port: all drop reasons except those that are not losses
    (a sink's deliberate 'sink' drops)."""
    exclude = set(exclude)
    return sum(int(v) for k, v in (port.get("drops") or {}).items() if k not in exclude)


def counters(port: dict) -> tuple:
    """A comparable snapshot of a port's counters, for wait_stable()."""
    return (port.get("rx_packets"), port.get("tx_packets"), port.get("rx_bytes"),
            port.get("tx_bytes"), tuple(sorted((port.get("drops") or {}).items())))


# --------------------------------------------------------------------------- testpmd

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_KV = re.compile(r"([A-Za-z][A-Za-z-]*):\s+(-?\d+)")
_PPS = re.compile(r"(Rx|Tx)-pps:\s+(\d+)\s+(?:Rx|Tx)-bps:\s+(\d+)")
_NIC_HDR = re.compile(r"NIC statistics for port (\d+)")
_FWD_HDR = re.compile(r"Forward statistics for port (\d+)")
_ACC_HDR = re.compile(r"Accumulated forward statistics for all ports")


def memory_mode() -> str:
    """FERRY_TESTPMD_MEM: nohuge (default), huge, or auto (huge if hugetlbfs has room)."""
    mode = os.environ.get("FERRY_TESTPMD_MEM", "nohuge")
    if mode == "auto":
        mode = "huge" if _hugetlbfs_mount() and _free_hugepage_mb() >= 1100 else "nohuge"
    return mode


def _hugetlbfs_mount() -> Optional[str]:
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "hugetlbfs":
                    return parts[1]
    except OSError:
        pass
    return None


def _free_hugepage_mb() -> int:
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            info[k] = v.split()
    try:
        return int(info["HugePages_Free"][0]) * int(info["Hugepagesize"][0]) // 1024
    except (KeyError, ValueError, IndexError):
        return 0


class Testpmd(_Process):
    """One dpdk-testpmd process with one vdev.

    mode: forward mode (txonly, rxonly, io, macswap, ...). cpu: the CPU both of its lcores run
    on (the main lcore only sleeps). txpkts: frame length for txonly (without FCS).
    interactive: drive through stdin (no periodic stats) - needed for tx_first().
    """

    name = "testpmd"

    def __init__(self, vdev: str, mode: str, cpu: int = 1, log_path: Optional[str] = None,
                 txpkts: Optional[int] = None, burst: Optional[int] = None,
                 queues: int = 1, max_pkt_len: Optional[int] = None,
                 mbuf_size: Optional[int] = None, total_mbufs: int = 16384,
                 stats_period: int = 1, interactive: bool = False, mem: Optional[str] = None,
                 mem_mb: int = 512, sockets: Iterable[str] = (),
                 extra_eal: Iterable[str] = (), extra_app: Iterable[str] = ()):
        super().__init__()
        self.vdev = vdev
        self.mode = mode
        self.cpu = cpu
        self.prefix = f"ferry-{os.getpid()}-{next(_prefix_counter)}"
        self.log_path = log_path or os.path.join(tempfile.gettempdir(), f"{self.prefix}.log")
        self.txpkts = txpkts
        self.burst = burst
        self.queues = queues
        self.max_pkt_len = max_pkt_len
        self.mbuf_size = mbuf_size
        self.total_mbufs = total_mbufs
        self.stats_period = stats_period
        self.interactive = interactive
        self.mem = mem or memory_mode()
        self.mem_mb = mem_mb
        self.owned_sockets = list(sockets)  # removed after exit
        self.extra_eal = list(extra_eal)
        self.extra_app = list(extra_app)
        self.hugedir: Optional[str] = None
        # parsed output
        self.samples: dict[int, list[dict]] = {}   # port -> [{t, rx_pps, tx_pps, rx_bps, tx_bps}]
        self.nic: dict[int, dict] = {}             # port -> latest periodic NIC stats
        self.fwd: dict[int, dict] = {}             # port -> forward stats (last printed)
        self.accumulated: dict = {}
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._reader: Optional[threading.Thread] = None
        self._started = False
        self._prompt = False
        self._partial = ""
        self._section = None
        self._pending_pps: dict = {}
        self._nic_port = None
        self._stopped = False

    # -- command line

    def command(self) -> list[str]:
        tp = testpmd_binary()
        if not tp:
            raise TestpmdError("dpdk-testpmd not found (apt-get install dpdk-dev)")
        cmd = [tp, "--lcores", f"0@{self.cpu},1@{self.cpu}", "--no-pci",
               f"--file-prefix={self.prefix}", "--vdev", self.vdev]
        if self.mem == "huge":
            self.hugedir = _hugetlbfs_mount()
            if not self.hugedir:
                raise TestpmdError("FERRY_TESTPMD_MEM=huge but no hugetlbfs is mounted")
            cmd += ["-m", str(self.mem_mb), "--single-file-segments", "--huge-dir", self.hugedir]
        else:
            cmd += ["--no-huge", "-m", str(self.mem_mb), "--single-file-segments"]
        cmd += ["--log-level=lib.eal:notice"] + self.extra_eal
        cmd += ["--"]
        if self.interactive:
            cmd += ["-i"]
        else:
            cmd += [f"--stats-period={self.stats_period}"]
        cmd += [f"--forward-mode={self.mode}", f"--total-num-mbufs={self.total_mbufs}"]
        if self.queues > 1:
            cmd += [f"--rxq={self.queues}", f"--txq={self.queues}"]
        mbuf_size = self.mbuf_size
        if mbuf_size is None and self.txpkts and self.txpkts > 2048:
            mbuf_size = self.txpkts + 256
        if mbuf_size:
            cmd += [f"--mbuf-size={mbuf_size}"]  # must precede --txpkts
        if self.txpkts:
            cmd += [f"--txpkts={self.txpkts}"]
        if self.burst:
            cmd += [f"--burst={self.burst}"]
        if self.max_pkt_len:
            cmd += [f"--max-pkt-len={self.max_pkt_len}"]
        if self.mode == "rxonly":
            cmd += ["--no-flush-rx"]
        return cmd + self.extra_app

    # -- lifecycle

    def start(self, wait: bool = True, timeout: float = 30.0) -> "Testpmd":
        """Start testpmd. wait=False returns at once (virtio-user server=1 blocks in probe
        until its back-end connects: wait for its socket, start the back-end, then call
        wait_started())."""
        cmd = self.command()
        with open(self.log_path, "ab") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
        self._spawn(cmd, stdin=subprocess.PIPE if self.interactive else subprocess.DEVNULL,
                    stdout=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, name=f"read-{self.prefix}",
                                        daemon=True)
        self._reader.start()
        if wait:
            try:
                self.wait_started(timeout)
            except BaseException:
                self.kill()
                raise
        return self

    def wait_started(self, timeout: float = 30.0):
        """Until forwarding runs (non-interactive) or the prompt shows (interactive)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while not (self._prompt if self.interactive else self._started):
                if self.exited() and not (self._reader and self._reader.is_alive()):
                    raise TestpmdError(f"testpmd exited with {self.returncode()} during "
                                       f"startup\ncommand: {' '.join(self.cmd)}\n"
                                       f"{self.log_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TestpmdError(f"testpmd did not start within {timeout:.0f}s\n"
                                       f"command: {' '.join(self.cmd)}\n{self.log_tail()}")
                self._cv.wait(min(left, 0.2))

    def stop(self, timeout: float = 20.0) -> dict:
        """SIGINT (or `quit` when interactive), wait for the totals, clean up.
        Returns the final accumulated forward stats (see totals())."""
        if self._stopped:
            return self.totals()
        if self.proc is not None and not self.exited() and self.interactive:
            try:
                self.send("stop")
                self.send("quit")
                self.proc.wait(timeout)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                pass
        self._terminate(signal.SIGINT, timeout)
        if self._reader is not None:
            self._reader.join(10)
        self._after_exit()
        return self.totals()

    def _after_exit(self):
        self._stopped = True
        if self.proc is not None and self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        shutil.rmtree(DPDK_RUNTIME / self.prefix, ignore_errors=True)
        try:
            DPDK_RUNTIME.rmdir()  # only if no other DPDK process uses it
        except OSError:
            pass
        hugedir = self.hugedir or _hugetlbfs_mount()
        if hugedir:
            for f in glob.glob(os.path.join(hugedir, f"{self.prefix}map_*")):
                _remove(f)
        for s in self.owned_sockets:
            _remove(s)

    # -- interactive control

    def send(self, line: str):
        if not self.interactive or self.proc is None or self.proc.stdin is None:
            raise TestpmdError("send() needs an interactive testpmd")
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def tx_first(self, bursts: int, wait: bool = True, timeout: float = 60.0):
        """Interactive only: send exactly `bursts` x --burst frames, then run the configured
        forward mode (use rxonly so nothing else is sent). Frames the ring refused show up in
        TX-dropped; TX-packets is what entered the ring. wait: until the bursts are sent."""
        with self._cv:
            self._prompt = False
        self.send(f"start tx_first {bursts}")
        if wait:
            self.wait_prompt(timeout)

    def wait_prompt(self, timeout: float = 30.0):
        """Interactive only: until testpmd shows its prompt again (the last command is done)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while not self._prompt:
                if self.exited() and not (self._reader and self._reader.is_alive()):
                    raise TestpmdError(f"testpmd exited\n{self.log_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TestpmdError(f"no testpmd prompt within {timeout:.0f}s\n"
                                       f"{self.log_tail()}")
                self._cv.wait(min(left, 0.2))

    # -- output parsing

    def _read(self):
        fd = self.proc.stdout.fileno()
        with open(self.log_path, "ab", buffering=0) as log:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                log.write(chunk)
                self._feed(chunk.decode(errors="replace"))
        with self._cv:
            if self._partial:
                self._parse_line(self._partial)
                self._partial = ""
            self._cv.notify_all()

    def _feed(self, text: str):
        with self._cv:
            data = self._partial + _ANSI.sub("", text)
            lines = data.split("\n")
            self._partial = lines.pop()
            for line in lines:
                self._parse_line(line)
            if self._partial.rstrip().endswith("testpmd>"):
                self._prompt = True
            self._cv.notify_all()

    def _parse_line(self, line: str):
        now = time.monotonic()
        if "testpmd>" in line:
            self._prompt = True
        if ("start packet forwarding" in line or "Port statistics" in line
                or "packet forwarding - ports=" in line):
            self._started = True
        m = _NIC_HDR.search(line)
        if m:
            self._section = ("nic", int(m.group(1)))
            self._nic_port = int(m.group(1))
            self.nic[self._nic_port] = {}
            return
        m = _FWD_HDR.search(line)
        if m:
            self._section = ("fwd", int(m.group(1)))
            self.fwd[int(m.group(1))] = {}
            return
        if _ACC_HDR.search(line):
            self._section = ("acc", None)
            self.accumulated = {}
            return
        m = _PPS.search(line)
        if m:
            port = self._nic_port if self._nic_port is not None else 0
            d = self._pending_pps.setdefault(port, {})
            key = m.group(1).lower()
            d[f"{key}_pps"] = int(m.group(2))
            d[f"{key}_bps"] = int(m.group(3))
            if key == "tx":  # testpmd prints Rx-pps then Tx-pps
                d["t"] = now
                self.samples.setdefault(port, []).append(d)
                self._pending_pps[port] = {}
            return
        if "Throughput" in line or line.strip().startswith(("####", "----", "++++")):
            self._section = None  # end of a block (headers were matched above)
            return
        if self._section is None:
            return
        pairs = {k: int(v) for k, v in _KV.findall(line)}
        if not pairs:
            return
        kind, port = self._section
        if kind == "nic":
            self.nic[port].update(pairs)
        elif kind == "fwd":
            self.fwd[port].update(pairs)
        else:
            self.accumulated.update(pairs)

    # -- results

    def totals(self, port: Optional[int] = None) -> dict:
        """Final forward statistics (RX-packets, RX-dropped, RX-total, TX-packets, TX-dropped,
        TX-total, counted from forwarding start; RX-dropped is the NIC's imissed), plus the last
        periodic NIC counters as NIC-RX-missed etc. For one port, or accumulated when None."""
        with self._lock:
            if port is None:
                base = dict(self.accumulated) if self.accumulated else dict(self.fwd.get(0, {}))
                nic = {}
                for d in self.nic.values():
                    for k, v in d.items():
                        nic[k] = nic.get(k, 0) + v
            else:
                base = dict(self.fwd.get(port, {}))
                nic = dict(self.nic.get(port, {}))
        for k, v in nic.items():
            base[f"NIC-{k}"] = v
        return base

    def require_totals(self, port: Optional[int] = None) -> dict:
        t = self.totals(port)
        if "TX-packets" not in t or "RX-packets" not in t:
            raise TestpmdError(f"testpmd printed no final forward statistics\n{self.log_tail()}")
        return t

    def pps_samples(self, direction: str, since: float = 0.0, until: float = float("inf"),
                    port: int = 0) -> list[int]:
        key = f"{direction.lower()}_pps"
        with self._lock:
            return [s[key] for s in self.samples.get(port, []) if since < s["t"] <= until]

    def wait_samples(self, count: int, since: float, timeout: float, port: int = 0):
        def enough():
            if self.exited():
                raise TestpmdError(f"testpmd exited while measuring\n{self.log_tail()}")
            with self._lock:
                return len([s for s in self.samples.get(port, []) if s["t"] > since]) >= count
        wait_until(enough, timeout, f"{count} stats periods from testpmd")

    def measure(self, direction: str, warmup: float = 2.0, duration: float = 5.0,
                port: int = 0) -> dict:
        """Sleep `warmup`, then collect the per-period pps readings over `duration` seconds.
        Returns {median, samples}."""
        time.sleep(warmup)
        t0 = time.monotonic()
        n = max(1, int(round(duration / max(self.stats_period, 1))))
        self.wait_samples(n, t0, duration + 10, port)
        values = self.pps_samples(direction, since=t0, port=port)[:n]
        return {"median": median(values), "samples": values}

    def nic_value(self, key: str, port: int = 0) -> Optional[int]:
        with self._lock:
            return self.nic.get(port, {}).get(key)


def virtio_user(path: str, mode: str, server: bool = False, queues: int = 1,
                mrg_rxbuf: Optional[bool] = None, in_order: Optional[bool] = None,
                packed_vq: Optional[bool] = None, queue_size: Optional[int] = None,
                mac: Optional[str] = None, mtu: Optional[int] = None, cpu: int = 1,
                **kw) -> Testpmd:
    """A testpmd virtio-user front-end on vhost-user socket `path` (not started).
    server=True: testpmd listens on path (the back-end connects); otherwise it connects."""
    vdev = f"net_virtio_user0,path={path}"
    if server:
        vdev += ",server=1"
    if queues != 1:
        vdev += f",queues={queues}"
    for key, val in (("mrg_rxbuf", mrg_rxbuf), ("in_order", in_order),
                     ("packed_vq", packed_vq)):
        if val is not None:
            vdev += f",{key}={1 if val else 0}"
    if queue_size:
        vdev += f",queue_size={queue_size}"
    if mac:
        vdev += f",mac={mac}"
    if mtu:
        kw.setdefault("max_pkt_len", mtu + 18)
    sockets = [path] if server else []
    return Testpmd(vdev, mode, cpu=cpu, queues=queues, sockets=sockets, **kw)


def vhost_backend(iface: str, mode: str, client: bool = False, queues: int = 1, cpu: int = 0,
                  **kw) -> Testpmd:
    """A testpmd net_vhost back-end on `iface` (not started); the reference for Ferry.
    client=True: it connects to a listening front-end (virtio-user server=1)."""
    vdev = f"net_vhost0,iface={iface}"
    if client:
        vdev += ",client=1"
    if queues != 1:
        vdev += f",queues={queues}"
    sockets = [] if client else [iface]
    return Testpmd(vdev, mode, cpu=cpu, queues=queues, sockets=sockets, **kw)


# --------------------------------------------------------------------------- a test's processes


class Lab:
    """The processes and files of one test. close() stops everything it started (gracefully,
    then SIGKILL), copies the logs to `keep_logs` (e.g. pytest's tmp_path) and removes its
    working directory, whatever happened in the test."""

    def __init__(self, tag: str = "it", keep_logs: Optional[str] = None):
        self.dir = Workdir(tag)
        self.keep_logs = keep_logs
        self.procs: list[_Process] = []
        self._n = itertools.count()

    def path(self, name: str) -> str:
        return self.dir / name

    def _log(self, stem: str) -> str:
        return self.dir / f"{next(self._n):02d}-{stem}.log"

    def ferry(self, ports: list[str], control: Optional[str] = None, start: bool = True,
              **kw) -> Ferry:
        f = Ferry(ports, control or self.path("ctl.sock"), self._log("ferry"), **kw)
        self.procs.append(f)
        return f.start() if start else f

    def virtio_user(self, path: str, mode: str, **kw) -> Testpmd:
        kw.setdefault("log_path", self._log(f"testpmd-virtio-{mode}"))
        t = virtio_user(path, mode, **kw)
        self.procs.append(t)
        return t

    def vhost_backend(self, iface: str, mode: str, **kw) -> Testpmd:
        kw.setdefault("log_path", self._log(f"testpmd-vhost-{mode}"))
        t = vhost_backend(iface, mode, **kw)
        self.procs.append(t)
        return t

    def logs(self, lines: int = 25) -> str:
        """Tails of every log, for assertion messages."""
        return "\n".join(p.log_tail(lines) for p in self.procs if p.log_path)

    def close(self):
        for p in reversed(self.procs):
            try:
                if not getattr(p, "_stopped", False) or not p.exited():
                    p.stop()
            except Exception:
                p.kill()
        if self.keep_logs:
            try:
                os.makedirs(self.keep_logs, exist_ok=True)
                for f in glob.glob(os.path.join(self.dir.path, "*.log")):
                    shutil.copy(f, self.keep_logs)
            except OSError:
                pass
        self.dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
