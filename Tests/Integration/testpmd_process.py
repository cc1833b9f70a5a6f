"""dpdk-testpmd (DPDK 22.11) as a tracked process: a virtio-user *front-end*
(``virtio_user()``) that talks to Ferry over a vhost-user socket, or a vhost-user *back-end*
(``vhost_backend()``), the reference the benchmark compares Ferry with.

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
"""

from __future__ import annotations

import glob
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterable, Optional

from processes import HarnessError, TrackedProcess, median, remove_path, wait_until

DPDK_RUNTIME = Path("/var/run/dpdk")

_prefix_counter = itertools.count()


class TestpmdError(HarnessError):
    pass


def testpmd_binary() -> Optional[str]:
    return os.environ.get("FERRY_TESTPMD") or shutil.which("dpdk-testpmd")


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
        mode = "huge" if hugetlbfs_mount() and free_hugepage_mb() >= 1100 else "nohuge"
    return mode


def hugetlbfs_mount() -> Optional[str]:
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "hugetlbfs":
                    return parts[1]
    except OSError:
        pass
    return None


def free_hugepage_mb() -> int:
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            info[k] = v.split()
    try:
        return int(info["HugePages_Free"][0]) * int(info["Hugepagesize"][0]) // 1024
    except (KeyError, ValueError, IndexError):
        return 0


class Testpmd(TrackedProcess):
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
            self.hugedir = hugetlbfs_mount()
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
        hugedir = self.hugedir or hugetlbfs_mount()
        if hugedir:
            for f in glob.glob(os.path.join(hugedir, f"{self.prefix}map_*")):
                remove_path(f)
        for s in self.owned_sockets:
            remove_path(s)

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

    def timed_pps_samples(self, direction: str, since: float = 0.0, until: float = float("inf"),
                          port: int = 0) -> list[tuple[float, int]]:
        """(time.monotonic() when read, pps) of each period's reading: the period ends then."""
        key = f"{direction.lower()}_pps"
        with self._lock:
            return [(s["t"], s[key]) for s in self.samples.get(port, []) if since < s["t"] <= until]

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
