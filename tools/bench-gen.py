#!/usr/bin/env python3
"""Ferry's generator against dpdk-testpmd's txonly, into the same sink, in the same run.

The sink is always dpdk-testpmd's virtio-user rxonly on CPU 1; the generator under test runs
on CPU 0 in one process and hands its frames to the sink's rings through a vhost-user socket:

  ferry        gen:size=64 (stamped: sequence number and send time written per frame) + vhost
  ferry-plain  gen:size=64,stamp=off (the frames as built, nothing written per frame) + vhost
  dpdk         testpmd net_vhost txonly (--txpkts 64), the reference

A measurement warms up, then keeps the median of the sink's per-second Rx-pps readings.
The generators alternate within each round; the ratios are to DPDK's best.

    sudo tools/bench-gen.py              # 3 rounds
    sudo tools/bench-gen.py --quick      # 1 round of 3 s

FERRY_BIN overrides the Ferry binary; FERRY_TESTPMD_MEM=nohuge|huge|auto testpmd's memory.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (NOISY, add_run_options, begin_run, fmt, h,  # noqa: E402
                      least_noisy, noisy_note, parse_run_options, ratio, run_rounds,
                      summarize, busy_jiffies, proc_jiffies)

GENERATOR_CPU = 0
SINK_CPU = 1
IMPLS = ["ferry", "ferry-plain", "dpdk"]


def measure(impl: str, size: int, warmup: float, duration: float, lab: h.Lab) -> dict:
    sock = lab.path("bench.sock")
    if impl == "dpdk":
        generator = lab.vhost_backend(sock, "txonly", cpu=GENERATOR_CPU, txpkts=size).start()
    else:
        stamp = ",stamp=off" if impl == "ferry-plain" else ""
        generator = lab.ferry([f"gen:dst=02:00:00:00:00:02,src=02:00:00:00:00:01,size={size}{stamp},name=gen",
                               f"vhost:{sock},name=vm"], cpu=GENERATOR_CPU, taskset=str(GENERATOR_CPU))
    h.wait_for_socket(sock, proc=generator)
    sink = lab.virtio_user(sock, "rxonly", cpu=SINK_CPU).start()
    time.sleep(warmup)
    hz = os.sysconf("SC_CLK_TCK")
    pids = [generator.pid, sink.pid]
    t0, busy0, ours0 = time.monotonic(), busy_jiffies(), proc_jiffies(pids)
    result = sink.measure("rx", warmup=0, duration=duration)
    t1, busy1, ours1 = time.monotonic(), busy_jiffies(), proc_jiffies(pids)
    sink.stop()
    generator.stop()
    return {"mpps": result["median"] / 1e6, "samples": result["samples"],
            "other_cpus": max(0.0, ((busy1 - busy0) - (ours1 - ours0)) / hz / (t1 - t0))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_options(ap, sizes="64")
    args = parse_run_options(ap)
    problems = h.environment_problems()
    if problems:
        print("bench-gen: cannot run:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    load = os.getloadavg()[0]
    begin_run(f"# generator CPU {GENERATOR_CPU}, sink (testpmd virtio-user rxonly) CPU {SINK_CPU}; "
              f"{args.rounds} round(s), warm-up {args.warmup:g} s, {args.duration:g} s per measurement; "
              f"load average {load:.2f}")
    results, failed = run_rounds(
        args.rounds, [(s,) for s in args.size_list], lambda cell: IMPLS,
        lambda rnd, size, impl: least_noisy(args, f"round {rnd + 1} {size:>5} B {impl:11}",
                                            lambda lab: measure(impl, size, args.warmup, args.duration, lab),
                                            lambda m: []))
    print()
    print(f"{'size':>5}  {'generator':11} {'best':>9} {'median':>9}  {'/ DPDK best':>11}")
    for size in args.size_list:
        dpdk = summarize({"size": size}, {"x": results.get((size, "dpdk"), [])}).get("x_best")
        for impl in IMPLS:
            row = summarize({"size": size}, {"x": results.get((size, impl), [])})
            print(f"{size:>5}  {impl:11} {fmt(row['x_best'])} {fmt(row['x_median'])}  "
                  f"{fmt(ratio(row['x_best'], dpdk), 11)}{noisy_note(row)}")
    print(f"(Mpps at the sink; load average {load:.2f} before, {os.getloadavg()[0]:.2f} after; "
          f"'noisy' = other processes used > {NOISY:.2f} CPU during a measurement)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
