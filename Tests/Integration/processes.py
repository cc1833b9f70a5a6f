"""The child processes a test starts and waits on (Python 3 stdlib only).

A `TrackedProcess` runs in its own process group with SIGKILL as its parent-death signal, is
tracked from start to stop, and is stopped by ``cleanup_all()`` (registered with atexit) if a
test left it running. The waits poll with a deadline and say what they waited for.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from typing import Callable, Iterable, Optional

_live: "set[TrackedProcess]" = set()
_live_lock = threading.Lock()


class HarnessError(RuntimeError):
    pass


# --------------------------------------------------------------------------- waiting


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


def wait_for_socket(path: str, timeout: float = 15.0, proc: "Optional[TrackedProcess]" = None):
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


def die_with_parent():
    """preexec_fn: the child gets SIGKILL if the test runner dies, so no busy-poller is orphaned."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def remove_path(path: Optional[str]):
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- process base


class TrackedProcess:
    """A child in its own process group, tracked for cleanup."""

    name = "process"

    def __init__(self):
        self.proc: Optional[subprocess.Popen] = None
        self.log_path: Optional[str] = None
        self.cmd: list[str] = []

    def _spawn(self, cmd: list[str], stdin=subprocess.DEVNULL, stdout=None, env=None):
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=die_with_parent, env=env)
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
        while not self.exited():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

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
