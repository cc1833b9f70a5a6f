#!/usr/bin/env python3
"""Ferry with one worker against Ferry with two, in the same run: how the switch scales.

No front-end is involved, so the measurement is the switch itself (pull, classify,
learn, decide, push) and nothing else competes for the CPUs: two VLANs, each a
generator flooding into a sink (`gen:...,vlan=10` + `sink:vlan=10`, the same in VLAN
20), every frame learned (refreshed) and decided. One worker pinned to CPU 0 polls
both generators; two workers pinned to CPUs 0 and 1 poll one each. The rate is the
sinks' tx_packets over time, read through `ferry ctl stats`. Rounds alternate the two
set-ups; best and median are printed with the 2-worker/1-worker ratio.

    sudo tools/bench-workers.py --rounds 3 --duration 3 --sizes 64,1518

`--workloads W1q2,W2q2` measures the same two set-ups with a guest of two queue pairs
(`vhost:SOCK,queues=2`; testpmd virtio-user `queues=2`, one forwarding lcore on CPU 1):
W1q2 the guest sends (txonly) into a sink, counted at the sink; W2q2 two generators
(one receive queue each, so each worker polls one) send to the guest (rxonly), counted at
the guest's port. With two workers, worker 1 shares CPU 1 with the guest: on a 2-CPU
machine this shows what a second worker costs or gains beside a busy front-end, not what
it would gain on a CPU of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "Tests" / "Integration"))
import harness as h  # noqa: E402

SETUPS = {"1 worker": ["--workers", "1", "--cpus", "0"], "2 workers": ["--workers", "2", "--cpus", "0,1"]}


GUEST_MAC = "02:00:00:00:00:02"
GUEST_CPU = 1


def measure(lab: h.Lab, workload: str, setup: str, size: int, warmup: float, duration: float) -> float:
    ports = []
    extra = list(SETUPS[setup])
    guest = None
    if workload == "gen":
        for i, vlan in enumerate((10, 20)):
            ports += [f"gen:dst=02:00:00:00:{vlan:02x}:02,src=02:00:00:00:{vlan:02x}:01,size={size},"
                      f"vlan={vlan},name=g{i}", f"sink:vlan={vlan},name=s{i}"]
        counted = [("s0", "tx_packets"), ("s1", "tx_packets")]
    else:
        sock = lab.path("guest.sock")
        ports.append(f"vhost:{sock},queues=2,name=vm")
        if workload == "W1q2":
            ports.append("sink:name=sink")
            counted = [("sink", "tx_packets")]
        else:
            # The guest's address is static: both generators' frames go to it alone, unicast.
            for i in range(2):
                ports.append(f"gen:dst={GUEST_MAC},src=02:00:00:00:01:{i:02x},size={size},name=g{i}")
            extra += ["--fdb", f"{GUEST_MAC},port=vm"]
            counted = [("vm", "tx_packets")]
    ferry = lab.ferry(ports, extra_args=extra)
    try:
        if workload != "gen":
            h.wait_for_socket(lab.path("guest.sock"), proc=ferry)
            mode = "txonly" if workload == "W1q2" else "rxonly"
            guest = lab.virtio_user(lab.path("guest.sock"), mode, cpu=GUEST_CPU, queues=2,
                                    txpkts=size if mode == "txonly" else None).start()

        def sent() -> int:
            stats = ferry.stats()
            return sum(h.port_stats(stats, name)[key] for name, key in counted)
        time.sleep(warmup)
        v0, t0 = sent(), time.monotonic()
        time.sleep(duration)
        v1, t1 = sent(), time.monotonic()
    finally:
        if guest is not None:
            guest.stop()
        ferry.stop()
    return (v1 - v0) / (t1 - t0) / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--sizes", default="64,1518")
    ap.add_argument("--workloads", default="gen",
                    help="gen (generators into sinks, no guest), W1q2, W2q2 (a 2-queue guest)")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args()
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for w in workloads:
        if w not in ("gen", "W1q2", "W2q2"):
            ap.error(f"unknown workload {w!r} (gen, W1q2, W2q2)")
    problems = h.environment_problems(need_ferry=True, need_testpmd=any(w != "gen" for w in workloads))
    if (os.cpu_count() or 1) < 2:
        problems.append("needs 2 CPUs")
    if problems:
        print("bench-workers: cannot run: " + "; ".join(problems), file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",")]
    cells = [(w, s) for w in workloads for s in sizes]
    results: dict = {f"{w}:{s}:{k}": [] for w, s in cells for k in SETUPS}
    print(f"# {time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}; {args.rounds} round(s), "
          f"warm-up {args.warmup:g} s, {args.duration:g} s per measurement", flush=True)
    for rnd in range(args.rounds):
        for workload, size in cells:
            order = list(SETUPS) if rnd % 2 == 0 else list(reversed(SETUPS))
            for setup in order:
                with h.Lab("bwk") as lab:
                    mpps = measure(lab, workload, setup, size, args.warmup, args.duration)
                results[f"{workload}:{size}:{setup}"].append(mpps)
                print(f"round {rnd + 1} {workload:4} {size:>5} B {setup:9}: {mpps:.2f} Mpps", flush=True)
    print(f"\n{'workload':8} {'size':>5}  {'1 worker best/med':>18}  {'2 workers best/med':>19}  2w/1w (best)")
    for workload, size in cells:
        one, two = results[f"{workload}:{size}:1 worker"], results[f"{workload}:{size}:2 workers"]
        print(f"{workload:8} {size:>5}  {max(one):8.2f} {h.median(one):8.2f}  {max(two):9.2f} "
              f"{h.median(two):8.2f}  {max(two) / max(one):6.2f}")
    print(f"# {time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
