"""Shared pieces of Ferry's benchmarks (tools/bench-vhost.py, tools/bench-switch.py).

* machine load: how busy the CPUs are, how much of it was someone else's;
* `Tool`: one of our own C peers (tools/*.c), built on demand into .build/tools, run in its
  own process group with its `KEY k=v ...` output lines parsed;
* small formatting helpers.

Process control (testpmd, Ferry, cleanup on exit) is Tests/Integration/harness.py's.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

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
    """CPU time used by anything but `pids` between start() and stop(), in CPUs."""

    def __init__(self, pids):
        self.pids = [p for p in pids if p is not None]

    def start(self) -> "OtherLoad":
        self.t0, self.b0, self.o0 = time.monotonic(), busy_jiffies(), proc_jiffies(self.pids)
        return self

    def stop(self) -> float:
        hz = os.sysconf("SC_CLK_TCK")
        busy, ours = busy_jiffies() - self.b0, proc_jiffies(self.pids) - self.o0
        return max(0.0, (busy - ours) / hz / max(time.monotonic() - self.t0, 1e-3))


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
    cmd = [cc, "-O2", "-Wall", "-o", str(out), str(src)] + flags
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


class Tool(h._Process):
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


# --------------------------------------------------------------------------- formatting


def fmt(v, width=9):
    return f"{v:>{width}.2f}" if isinstance(v, (int, float)) else f"{v or '-':>{width}}"
