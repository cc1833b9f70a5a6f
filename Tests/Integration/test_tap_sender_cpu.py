"""The worker follows the CPU of whoever sends into its TAPs (Engine/SenderFollowing.swift).

Run as root from the repository root, after `swift build --product ferry -c release`:

    python3 -m pytest -v Tests/Integration/test_tap_sender_cpu.py

Topology: Ferry with its default placement (no `cpus`) and `tap:A,name=a`, `tap:B,name=b`,
each TAP moved into a namespace of its own. A busybox ping pinned by `taskset` to one CPU
pings through both ports, 5 ms apart (each sleep of the worker is far longer than the
shortest one it follows after); the worker thread `ferry-w0` of this Ferry must have been on
ping's CPU (/proc/PID/task/TID/stat field 39, sampled every 10 ms) for most of each run. Ping
moves CPU 0 -> 1 -> 0, so a worker that stays where it first woke fails one of the three. ~4 s.
"""

from __future__ import annotations

import os
import time

import pytest

import harness as h

ADDRESS = {"a": "198.18.62.1", "b": "198.18.62.2"}


def worker_stat(pid: int) -> str:
    """/proc path of the stat file of thread ferry-w0 of process `pid`."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            if f.read().strip() == "ferry-w0":
                return f"/proc/{pid}/task/{tid}/stat"
    raise h.HarnessError(f"no thread ferry-w0 in process {pid}")


def last_cpu(stat: str) -> int:
    """The CPU the thread last ran on: field 39, 'processor'."""
    with open(stat) as f:
        # Field 2 (comm) may hold spaces: count from the ')' that ends it.
        return int(f.read().rpartition(")")[2].split()[39 - 3])


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
    stat = worker_stat(ferry.pid)

    def ping_from(cpu: int, count: int) -> list[int]:
        """Where the worker was, sampled every 10 ms while `count` pings from `cpu` ran."""
        out = lab.path(f"ping-{cpu}.log")
        ping = ends["a"].popen(["taskset", "-c", str(cpu), "busybox", "ping", "-c", str(count), "-i", "0.005",
                                "-W", "1", ADDRESS["b"]], out)
        seen = []
        while ping.poll() is None:
            time.sleep(0.01)
            seen.append(last_cpu(stat))
        ping.wait()
        text = open(out).read()
        assert f"{count} packets received" in text, f"ping from CPU {cpu}: {text}\n{lab.logs()}"
        return seen

    ping_from(first, 3)  # ARP and the first flood, before the placement counts
    for cpu in (first, second, first):
        seen = ping_from(cpu, 100)
        # The worker moves at the first wake-up on ping's CPU... unless another real-time task
        # holds that CPU then (a teammate's Ferry on a shared machine): most samples, not all.
        on = sum(1 for c in seen if c == cpu)
        assert on >= len(seen) / 2, \
            f"ping ran on CPU {cpu}, the worker on it in {on} of {len(seen)} samples: {seen}\n{lab.logs()}"
    moves = ferry.stats()["workers"][0]["sender_moves"]
    # At least the moves to the second CPU and back; one more if the worker first woke elsewhere.
    assert moves >= 2, f"ferry ctl stats counts {moves} moves of the worker to a sender's CPU"
