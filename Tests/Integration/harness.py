"""What Ferry's integration tests and benchmarks drive, in one import (``import harness as h``).

The pieces live by concern:

* processes.py: a tracked child process (own process group, killed with its parent, stopped
  by ``cleanup_all()`` at exit), the waits, short-named work directories;
* ferry_process.py: `Ferry` (``ferry run``) and the ``ferry ctl`` helpers;
* testpmd_process.py: `Testpmd` (dpdk-testpmd as a virtio-user front-end or a vhost-user
  back-end) and what it takes to run it;
* here: `Lab`, the processes and files of one test, and what a machine needs to run them.

Fixtures that build on these are in conftest.py.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
from typing import Optional

from ferry_process import (DEFAULT_CONTROL, REPO, Ferry, FerryError, counters, ctl_error, ctl_ok,  # noqa: F401
                           ctl_run, drop_total, ferry_binary, ferry_binary_problem, ferry_ctl, ferry_stats,
                           port_stats)
from processes import (HarnessError, TrackedProcess, Workdir, cleanup_all, die_with_parent,  # noqa: F401
                       median, remove_path, wait_for_socket, wait_stable, wait_until)
from testpmd_process import (DPDK_RUNTIME, Testpmd, TestpmdError, hugetlbfs_mount, memory_mode,  # noqa: F401
                             testpmd_binary, vhost_backend, virtio_user)


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
        problem = ferry_binary_problem()
        if problem:
            problems.append(problem)
    return problems


# --------------------------------------------------------------------------- a test's processes


class Lab:
    """The processes and files of one test. close() stops everything it started (gracefully,
    then SIGKILL), copies the logs to `keep_logs` (e.g. pytest's tmp_path) and removes its
    working directory, whatever happened in the test."""

    def __init__(self, tag: str = "it", keep_logs: Optional[str] = None):
        self.dir = Workdir(tag)
        self.keep_logs = keep_logs
        self.procs: list[TrackedProcess] = []
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
