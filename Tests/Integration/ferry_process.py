"""Ferry under test: ``ferry run --port ...`` as a tracked process, and ``ferry ctl``.

`Ferry` starts in its own process group with stdout and stderr in a log file; ``start()``
returns once the log shows ``ferry: ready``, ``stop()`` removes the sockets Ferry owns. The
``ctl_*`` helpers run ``ferry ctl`` against it the way people and scripts do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Iterable, Optional

from processes import HarnessError, TrackedProcess, remove_path, wait_until

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONTROL = "/run/ferry/ferry.sock"


class FerryError(HarnessError):
    pass


def ferry_binary() -> str:
    return os.environ.get("FERRY_BIN") or str(REPO / ".build" / "release" / "ferry")


def ferry_binary_problem(binary: Optional[str] = None) -> Optional[str]:
    """Why the Ferry binary (`binary`, else FERRY_BIN's or the release build's) cannot be run, or None."""
    binary = binary or ferry_binary()
    if not os.access(binary, os.X_OK):
        return f"Ferry binary {binary} missing or not executable: run `swift build -c release` or set FERRY_BIN"
    return None


class Ferry(TrackedProcess):
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
        problem = ferry_binary_problem(self.binary)
        if problem:
            raise FerryError(problem)
        os.makedirs(os.path.dirname(self.control) or ".", exist_ok=True)
        remove_path(self.control)
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
        remove_path(self.control)
        # Server-mode vhost sockets are Ferry's; client-mode ones belong to the peer.
        for spec in self.ports:
            if spec.startswith("vhost:"):
                fields = spec[len("vhost:"):].split(",")
                if "client" not in fields[1:]:
                    remove_path(fields[0])


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
