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


def measure(lab: h.Lab, setup: str, size: int, warmup: float, duration: float) -> float:
    ports = []
    for i, vlan in enumerate((10, 20)):
        ports += [f"gen:dst=02:00:00:00:{vlan:02x}:02,src=02:00:00:00:{vlan:02x}:01,size={size},"
                  f"vlan={vlan},name=g{i}", f"sink:vlan={vlan},name=s{i}"]
    ferry = lab.ferry(ports, extra_args=SETUPS[setup])
    try:
        def sent() -> int:
            stats = ferry.stats()
            return sum(h.port_stats(stats, f"s{i}")["tx_packets"] for i in range(2))
        time.sleep(warmup)
        v0, t0 = sent(), time.monotonic()
        time.sleep(duration)
        v1, t1 = sent(), time.monotonic()
    finally:
        ferry.stop()
    return (v1 - v0) / (t1 - t0) / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--sizes", default="64,1518")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args()
    problems = h.environment_problems(need_ferry=True, need_testpmd=False)
    if (os.cpu_count() or 1) < 2:
        problems.append("needs 2 CPUs")
    if problems:
        print("bench-workers: cannot run: " + "; ".join(problems), file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict = {f"{s}:{k}": [] for s in sizes for k in SETUPS}
    for rnd in range(args.rounds):
        for size in sizes:
            order = list(SETUPS) if rnd % 2 == 0 else list(reversed(SETUPS))
            for setup in order:
                with h.Lab("bwk") as lab:
                    mpps = measure(lab, setup, size, args.warmup, args.duration)
                results[f"{size}:{setup}"].append(mpps)
                print(f"round {rnd + 1} {size:>5} B {setup:9}: {mpps:.2f} Mpps", flush=True)
    print(f"\n{'size':>5}  {'1 worker best/med':>18}  {'2 workers best/med':>19}  2w/1w (best)")
    for size in sizes:
        one, two = results[f"{size}:1 worker"], results[f"{size}:2 workers"]
        print(f"{size:>5}  {max(one):8.2f} {h.median(one):8.2f}  {max(two):9.2f} {h.median(two):8.2f}"
              f"  {max(two) / max(one):6.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
