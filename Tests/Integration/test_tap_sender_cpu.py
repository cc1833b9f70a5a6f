"""The worker follows the CPU of whoever sends into its TAPs (Engine/SenderFollowing.swift).

Run as root from the repository root, after `swift build --product ferry -c release`:

    python3 -m pytest -v Tests/Integration/test_tap_sender_cpu.py

Topology: Ferry with its default placement (no `cpus`) and `tap:A,name=a`, `tap:B,name=b`,
each TAP moved into a namespace of its own. A busybox ping pinned by `taskset` to one CPU
pings through both ports, 5 ms apart (each sleep of the worker is far longer than the
shortest one it follows after); then the worker thread `ferry-w0` of this Ferry must last
have run on ping's CPU (/proc/PID/task/TID/stat field 39). Ping moves CPU 0 -> 1 -> 0, so a
worker that stays where it first woke fails one of the three. ~6 s.
"""

from __future__ import annotations

import os
import subprocess

import pytest

import harness as h

ADDRESS = {"a": "198.18.62.1", "b": "198.18.62.2"}


def worker_cpu(pid: int) -> int:
    """The CPU thread ferry-w0 of process `pid` last ran on."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            if f.read().strip() != "ferry-w0":
                continue
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            # Field 2 (comm) may hold spaces: count from the ')' that ends it; 'processor' is field 39.
            return int(f.read().rpartition(")")[2].split()[39 - 3])
    raise h.HarnessError(f"no thread ferry-w0 in process {pid}")


def test_the_worker_moves_to_the_pinned_pings_cpu(ferry_binary, lab, namespaces):
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.fail(f"needs two CPUs to move between, this process may use {cpus}", pytrace=False)
    first, second = cpus[0], cpus[1]
    n = os.getpid() % 100000
    taps = {"a": f"sca{n}", "b": f"scb{n}"}
    ferry = lab.ferry([f"tap:{taps['a']},name=a", f"tap:{taps['b']},name=b"])
    ends = {}
    for end in ("a", "b"):
        ends[end] = namespaces(f"sc{end}")
        ends[end].adopt(taps[end])
        ends[end].ip("addr", "add", f"{ADDRESS[end]}/24", "dev", taps[end])
    log = open(ferry.log_path).read()
    assert "TAP sender program loaded" in log, f"the sender program did not load:\n{lab.logs()}"

    def ping_from(cpu: int, count: int) -> str:
        res = ends["a"].exec(["taskset", "-c", str(cpu), "busybox", "ping", "-c", str(count), "-i", "0.005",
                              "-W", "1", ADDRESS["b"]], timeout=30, check=False)
        assert f"{count} packets received" in res.stdout, f"ping from CPU {cpu}: {res.stdout}{res.stderr}"
        return res.stdout

    ping_from(first, 3)  # ARP and the first flood, before the placement counts
    for cpu in (first, second, first):
        ping_from(cpu, 100)
        where = worker_cpu(ferry.pid)
        if where != cpu:
            # One wake-up the scheduler placed elsewhere (another real-time task on ping's
            # CPU) is forgiven once; a worker that does not follow stays where it is.
            ping_from(cpu, 100)
            where = worker_cpu(ferry.pid)
        assert where == cpu, f"ping ran on CPU {cpu}, the worker last on {where}\n{lab.logs()}"
    moves = ferry.stats()["workers"][0]["sender_moves"]
    # At least the moves to the second CPU and back; one more if the worker first woke elsewhere.
    assert moves >= 2, f"ferry ctl stats counts {moves} moves of the worker to a sender's CPU"
