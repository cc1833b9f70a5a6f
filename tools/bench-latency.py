#!/usr/bin/env python3
"""Round-trip latency through Ferry against the Linux bridge, in the same run, alternating.

Two namespaces of the benchmark's own ping each other, `--count` echo requests `--interval`
seconds apart (2,000 at 1 ms by default), through:

  bridge   the kernel: each namespace's veth end on a Linux bridge in a third namespace;
  ferry    two `tap:` ports of one Ferry (a TAP moved into each namespace), once per idle
           policy in `--idle` (`ferry run --idle POLICY`; "default" runs without the option,
           i.e. what a plain `ferry run` does; POLICY/CLASS adds `--wake-priority CLASS`,
           e.g. sleep/normal, default/normal).

Each round runs every back-end once, in order, so a change of the machine's state shows in
all of them. Per back-end: min / avg / p50 / p99 / max of the replies' round-trip times (µs,
ping's own figures per reply), the ratio of its average and maximum to the bridge's of the same
round, Ferry's CPU (of one core, over the ping run, from /proc/PID/stat) and how often its
worker fell asleep per ping (`ferry ctl stats`: each sleep puts a wake-up in front of a frame), and
the pings that got no reply (`lost`: a path that stalls for hundreds of milliseconds loses some), and
the replies slower than 200 µs and 1 ms (`>200`, `>1ms`: the maximum is one reply of 2,000, these
say how often the tail happens). The machine's load
(`/proc/loadavg`) is printed before and after each back-end: on a shared machine a figure is only
comparable with the bridge's of the same round.

    sudo tools/bench-latency.py                         # 3 rounds, bridge vs Ferry's default
    sudo tools/bench-latency.py --idle poll,adaptive,sleep --rounds 5
    sudo tools/bench-latency.py --idle default,default/normal   # real-time wake-ups or not
    sudo tools/bench-latency.py --count 500 --rounds 1   # a quick look
    sudo tools/bench-latency.py --other /tmp/ferry-old   # and the build before a change (PATH,PATH: several)
    sudo tools/bench-latency.py --trace /tmp/lat   # where each reply over 200 µs lost its time (perf)
    sudo tools/bench-latency.py --explain /tmp/lat --explain-every 2   # the same, cheap; rounds 2, 4 unrecorded

FERRY_BIN overrides the Ferry binary; FERRY_ARGS adds `ferry run` options. Hosts are in
198.18.0.0/15; every namespace, bridge and Ferry is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import h, proc_jiffies  # noqa: E402
import latency_trace  # noqa: E402

PREFIX = "lat"
IP_A, IP_B = "198.18.60.1", "198.18.60.2"
MAC_A, MAC_B = "02:00:c6:12:3c:01", "02:00:c6:12:3c:02"
HZ = os.sysconf("SC_CLK_TCK")


def ip(*args: str, check: bool = True):
    res = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res


def in_ns(ns: str, *cmd: str, check: bool = True):
    res = subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"{ns}: {' '.join(cmd)}: {res.stderr.strip()}")
    return res


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class Namespaces:
    """Two namespaces `a` and `b` (and a third for the bridge), IPv6 off, each end addressed."""

    def __init__(self, tag: str):
        pid = os.getpid()
        self.ns = {e: f"{PREFIX}{tag}{e}-{pid}" for e in ("a", "b")}
        self.extra: list[str] = []

    def add(self, name: str) -> str:
        if os.path.exists(f"/run/netns/{name}"):
            ip("netns", "del", name, check=False)
        ip("netns", "add", name)
        in_ns(name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
              "net.ipv6.conf.default.disable_ipv6=1", check=False)
        in_ns(name, "ip", "link", "set", "lo", "up")
        return name

    def up(self):
        for ns in self.ns.values():
            self.add(ns)

    def address(self, end: str, ifname: str, mac: str, addr: str):
        ns = self.ns[end]
        in_ns(ns, "ip", "link", "set", ifname, "address", mac, "up")
        in_ns(ns, "ip", "addr", "add", f"{addr}/24", "dev", ifname)

    def close(self):
        for ns in list(self.ns.values()) + self.extra:
            if os.path.exists(f"/run/netns/{ns}"):
                ip("netns", "del", ns, check=False)


PING_PREFIX: list[str] = []  # `taskset -c N` with --ping-cpu


TRACE: dict = {}  # --trace/--explain: "dir" (Path), "kind", "name" and "ferry" (its pid) of the run ping() records next


def ping(ns: Namespaces, count: int, interval: float) -> list[float]:
    """Round-trip times in µs of `count` echo requests from a to b (with --trace, also where each
    slow reply's time went: TRACE["summary"], the detail in TRACE["dir"]/NAME.txt)."""
    # A few first, so neither ARP nor a learning switch's first flood is in the figures.
    # busybox ping: Debian's iputils-ping is not among Ferry's dependencies (qemu_guest.py).
    in_ns(ns.ns["a"], "busybox", "ping", "-c", "3", "-i", "0.2", "-W", "2", IP_B)
    # Into a file, not a pipe: a pipe's reader (this script) would be woken by every reply's
    # line and compete with ping for its CPU while the round trips are measured.
    workers, ferry = latency_trace.ferry_threads(TRACE.pop("ferry", None)) if TRACE else (set(), set())
    data = TRACE["dir"] / f"{TRACE['name']}.data" if TRACE else None
    trace = None if not TRACE else latency_trace.KernelTrace(data, workers) if TRACE["kind"] == "explain" \
        else latency_trace.Trace(data)
    with tempfile.TemporaryFile(mode="w+") as out:
        with trace or contextlib.nullcontext():
            res = subprocess.run(["ip", "netns", "exec", ns.ns["a"], *PING_PREFIX, "busybox", "ping", "-c",
                                  str(count), "-i", f"{interval:g}", "-W", "2", IP_B],
                                 stdout=out, stderr=subprocess.STDOUT)
        out.seek(0)
        output = out.read()
    times = [float(m) * 1000 for m in re.findall(r"time=([\d.]+) ms", output)]
    if trace:
        by_seq = [0.0] * count
        for seq, ms in re.findall(r"seq=(\d+) ttl=\d+ time=([\d.]+) ms", output):
            if int(seq) < count:
                by_seq[int(seq)] = float(ms) * 1000
        base = TRACE["dir"] / TRACE["name"]
        base.with_suffix(".json").write_text(json.dumps({"rtts": by_seq, "workers": sorted(workers),
                                                          "ferry": sorted(ferry), "kind": TRACE["kind"]}))
        result = latency_trace.attribute(trace, by_seq, workers, ferry)
        TRACE["classes"] = result.get("classes", {})
        TRACE["summary"] = latency_trace.report(result, base.with_suffix(".txt"))
    # A stall of the forwarding path (a worker starved for hundreds of milliseconds) loses
    # pings: that is a result, shown as `lost`; only a path that barely works is an error.
    if len(times) < count * 0.5:
        raise RuntimeError(f"{len(times)} of {count} replies (ping exited {res.returncode})\n{output[-1000:]}")
    return times


def through_bridge(count: int, interval: float) -> dict:
    ns = Namespaces("br")
    try:
        ns.up()
        hub = ns.add(f"{PREFIX}brh-{os.getpid()}")
        ns.extra.append(hub)
        in_ns(hub, "ip", "link", "add", "br0", "type", "bridge")
        in_ns(hub, "ip", "link", "set", "br0", "up")
        for end, mac, addr in (("a", MAC_A, IP_A), ("b", MAC_B, IP_B)):
            in_ns(hub, "ip", "link", "add", f"h{end}", "type", "veth", "peer", "name", "eth0",
                  "netns", ns.ns[end])
            in_ns(hub, "ip", "link", "set", f"h{end}", "master", "br0", "up")
            ns.address(end, "eth0", mac, addr)
        rtt = ping(ns, count, interval)
        return {"rtt": rtt, "cpu": None, "sleeps": None, "lost": count - len(rtt)}
    finally:
        ns.close()


def through_ferry(count: int, interval: float, idle: str, wrapper: list[str],
                  binary: str | None = None) -> dict:
    ns = Namespaces("fy")
    lab = h.Lab("lat")
    pid = os.getpid() % 100000
    taps = {"a": f"flta{pid}", "b": f"fltb{pid}"}
    args = shlex.split(os.environ.get("FERRY_ARGS", ""))
    policy, _, wake = idle.partition("/")
    if policy != "default" and not policy.startswith("other"):
        args += ["--idle", policy]
    if wake:
        args += ["--wake-priority", wake]
    try:
        ns.up()
        ferry = lab.ferry([f"tap:{taps['a']},name=a", f"tap:{taps['b']},name=b"], extra_args=args,
                          wrapper=wrapper, binary=binary)
        for end, mac, addr in (("a", MAC_A, IP_A), ("b", MAC_B, IP_B)):
            ip("link", "set", taps[end], "netns", ns.ns[end])
            ns.address(end, taps[end], mac, addr)
        def sleeps() -> int:
            return sum(w["sleeps"] for w in ferry.stats()["workers"])
        slept = sleeps()
        if TRACE:
            TRACE["ferry"] = ferry.pid
        before = proc_jiffies([ferry.pid])
        t0 = time.monotonic()
        rtt = ping(ns, count, interval)
        cpu = (proc_jiffies([ferry.pid]) - before) / HZ / (time.monotonic() - t0)
        return {"rtt": rtt, "cpu": cpu, "sleeps": (sleeps() - slept) / count, "lost": count - len(rtt)}
    finally:
        lab.close()
        ns.close()


def summary(rtt: list[float]) -> dict:
    s = sorted(rtt)
    return {"min": s[0], "avg": statistics.fmean(s), "p50": s[len(s) // 2],
            "p99": s[min(len(s) - 1, int(len(s) * 0.99))], "max": s[-1],
            "over200": sum(1 for x in s if x > 200), "over1ms": sum(1 for x in s if x > 1000)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--interval", type=float, default=0.001, help="seconds between requests")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", default="default", metavar="P,...",
                    help="Ferry idle policies to run: default, poll, adaptive, sleep; "
                         "POLICY/normal or POLICY/realtime also sets --wake-priority")
    ap.add_argument("--wrapper", default="", metavar="CMD",
                    help="a command that execs Ferry, e.g. 'chrt -f 1' (a real-time worker)")
    ap.add_argument("--other", metavar="PATH[,PATH...]",
                    help="also run these Ferry binaries (their default policy) as back-ends ferry-other, "
                         "ferry-other2, ...: e.g. the build before a change")
    ap.add_argument("--ping-cpu", type=int, metavar="N", help="pin ping to CPU N (both back-ends)")
    ap.add_argument("--trace", type=Path, metavar="DIR",
                    help="record the scheduler around each ping run (perf record -a, steal from /proc/stat) "
                         "and say where every reply over 200 µs lost its time: one line per back-end, "
                         "the detail per reply in DIR (tools/latency_trace.py)")
    ap.add_argument("--explain", type=Path, metavar="DIR",
                    help="the same, recorded cheaply (a tracing instance of its own, read after the run: "
                         "switches, wake-ups, interrupts, ping's and the worker's system calls), with host "
                         "stalls (a CPU silent while ping or the worker ran) as a cause; a table of causes "
                         "per back-end at the end")
    ap.add_argument("--explain-every", type=int, default=1, metavar="N",
                    help="with --explain, record rounds 1, 1+N, 1+2N, ... only: the rounds between, "
                         "unrecorded, show what the recording costs")
    args = ap.parse_args()
    if args.trace and args.explain:
        sys.exit("bench-latency: --trace or --explain, not both")
    traced = args.trace or args.explain
    if traced:
        traced.mkdir(parents=True, exist_ok=True)
    if args.ping_cpu is not None:
        PING_PREFIX[:] = ["taskset", "-c", str(args.ping_cpu)]
    if os.geteuid() != 0:
        sys.exit("bench-latency: run as root (namespaces, TAPs)")
    policies = [p.strip() for p in args.idle.split(",") if p.strip()]
    print(f"# {args.count} pings at {args.interval * 1000:g} ms, a -> b, µs; {os.cpu_count()} CPUs; "
          f"Ferry {h.ferry_binary()}", flush=True)
    header = f"{'round':>5} {'back-end':<22} {'min':>7} {'avg':>7} {'p50':>7} {'p99':>7} {'max':>8}" \
             f" {'avg/br':>7} {'max/br':>7} {'cpu':>6} {'sl/ping':>7} {'lost':>5} {'>200':>5} {'>1ms':>5}  load"
    print(header, flush=True)
    results: dict[str, list[dict]] = {}
    binaries = {f"ferry-other{i + 1 if i else ''}": path for i, path in enumerate(args.other.split(","))} \
        if args.other else {}
    causes: dict[str, collections.Counter] = {}
    for r in range(1, args.rounds + 1):
        bridge = None
        recorded = traced and (args.trace or (r - 1) % max(1, args.explain_every) == 0)
        for backend in ["bridge"] + list(binaries) + [f"ferry-{p}" for p in policies]:
            before = load()
            TRACE.clear()
            if recorded:
                TRACE.update(dir=traced, name=f"round{r}-{backend}", kind="explain" if args.explain else "perf")
            m = through_bridge(args.count, args.interval) if backend == "bridge" \
                else through_ferry(args.count, args.interval, backend.split("-", 1)[1], shlex.split(args.wrapper),
                                   binaries.get(backend))
            s = summary(m["rtt"])
            s["cpu"] = m["cpu"]
            s["sleeps"] = m["sleeps"]
            s["lost"] = m["lost"]
            if backend == "bridge":
                bridge = s
            results.setdefault(backend, []).append(s)
            cpu = "" if s["cpu"] is None else f"{s['cpu'] * 100:5.1f}%"
            slept = "" if s["sleeps"] is None else f"{s['sleeps']:7.2f}"
            tag = "" if not traced else " traced" if recorded else " untraced"
            print(f"{r:>5} {backend + tag:<22} {s['min']:7.0f} {s['avg']:7.1f} {s['p50']:7.0f} {s['p99']:7.0f}"
                  f" {s['max']:8.0f} {s['avg'] / bridge['avg']:7.2f} {s['max'] / bridge['max']:7.2f}"
                  f" {cpu:>6} {slept:>7} {s['lost']:5d} {s['over200']:5d} {s['over1ms']:5d}  {before} -> {load()}",
                  flush=True)
            if recorded:
                print(f"      {backend}: {TRACE.pop('summary', 'no trace')}", flush=True)
                causes.setdefault(backend, collections.Counter()).update(TRACE.pop("classes", {}))
    print("# medians over rounds; the last two columns: replies over 200 µs and over 1 ms in all rounds", flush=True)
    for backend, rows in results.items():
        med = {k: statistics.median(x[k] for x in rows) for k in ("min", "avg", "p50", "p99", "max")}
        ratios = [x["avg"] / b["avg"] for x, b in zip(rows, results["bridge"])]
        maxr = [x["max"] / b["max"] for x, b in zip(rows, results["bridge"])]
        cpus = [x["cpu"] for x in rows if x["cpu"] is not None]
        cpu = f"{statistics.median(cpus) * 100:5.1f}%" if cpus else ""
        print(f"{'med':>5} {backend:<22} {med['min']:7.0f} {med['avg']:7.1f} {med['p50']:7.0f} {med['p99']:7.0f}"
              f" {med['max']:8.0f} {statistics.median(ratios):7.2f} {statistics.median(maxr):7.2f} {cpu:>6}"
              f" {'':>7} {'':>5} {sum(x['over200'] for x in rows):5d} {sum(x['over1ms'] for x in rows):5d}",
              flush=True)
    if causes:
        print("# replies over 200 µs in the recorded rounds, by their largest share (detail per reply in "
              f"{traced}/roundN-BACKEND.txt)", flush=True)
        for backend, counted in causes.items():
            kinds = collections.Counter()
            for cause, n in counted.items():
                kinds[cause.split(": ")[0]] += n
            print(f"{'why':>5} {backend:<22} " + ("; ".join(f"{n} {c}" for c, n in kinds.most_common()) or "none"),
                  flush=True)
            if kinds != counted:
                print(f"{'':>5} {'':<22} (" + "; ".join(f"{n} {c}" for c, n in counted.most_common()) + ")", flush=True)


if __name__ == "__main__":
    main()
