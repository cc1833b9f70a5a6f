#!/usr/bin/env python3
"""Ferry's vhost-user back-end against DPDK's own (testpmd net_vhost), same front-end.

The front-end is always dpdk-testpmd's virtio-user on CPU 1; the back-end under test runs on
CPU 0 in one process (Ferry: `taskset -c 0` and `--cpu 0`; DPDK: testpmd `--lcores 0@0,1@0`,
whose main lcore only sleeps).

  W1  front-end txonly  -> back-end drops   (Ferry: vhost:SOCK + sink;  DPDK: net_vhost rxonly)
  W2  back-end generates -> front-end rxonly (Ferry: gen + vhost:SOCK;  DPDK: net_vhost txonly)

A measurement warms up, then takes the front-end's per-second pps readings (Tx-pps for W1,
Rx-pps for W2) and keeps their median. Ferry and DPDK alternate within each round. A W1 line
also says which share of the front-end's frames found the ring full (txonly's TX-dropped): near
0 the front-end sets the rate, not the back-end.

    sudo tools/bench-vhost.py                 # 3 rounds, both back-ends
    sudo tools/bench-vhost.py --only dpdk     # just the DPDK reference rows
    sudo tools/bench-vhost.py --quick         # 1 round of 3 s
    sudo tools/bench-vhost.py --packed        # the front-end asks for packed rings (packed_vq=1)
    sudo tools/bench-vhost.py --in-order off  # the front-end refuses VIRTIO_F_IN_ORDER (in_order=0)
    sudo tools/bench-vhost.py --other /tmp/ferry-old   # and the build before a change, alternating
    sudo tools/bench-vhost.py --workloads W1 --profile-frontend /tmp/fe   # where the front-end's time goes

--profile-frontend DIR samples the front-end's CPU (`perf record -e cpu-clock -C 1`) over each
measurement and prints the front-end's own CPU time per frame sent, in all and at the addresses
that took most (testpmd and its PMDs are stripped: `objdump -d` the library at the address).
When the front-end sets the rate it polls without pause, so its time per frame is the rate's
inverse: what one back-end makes it pay per frame that another does not is where a W1 round goes.

FERRY_BIN overrides the Ferry binary; FERRY_TESTPMD_MEM=nohuge|huge|auto testpmd's memory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (NOISY, OtherLoad, add_other_option, add_run_options, begin_run,  # noqa: E402
                      ferry_binary_of, fmt, h, print_other_table, print_round_table,
                      least_noisy, noisy_note, parse_run_options, ratio, run_rounds, summarize,
                      with_other)

BACKEND_CPU = 0
FRONTEND_CPU = 1
GEN_DST = "02:00:00:00:00:02"
GEN_SRC = "02:00:00:00:00:01"
PROFILE_RATE = 4000        # cpu-clock samples per second on the front-end's CPU
PROFILE_TOP = 8            # addresses listed per measurement
PROFILE_KEPT = 40          # addresses kept per measurement, for the table across back-ends
WORKLOADS = {
    "W1": "virtio txonly -> back-end",
    "W2": "back-end gen -> virtio rxonly",
}


def measure(impl: str, workload: str, size: int, warmup: float, duration: float,
            lab: h.Lab, packed: bool = False, in_order: bool = True,
            binary: str | None = None, profile: str | None = None) -> dict:
    """One measurement; returns {"mpps": median, "samples": [...], ...}."""
    sock = lab.path("bench.sock")
    if impl == "dpdk":
        if workload == "W1":
            backend = lab.vhost_backend(sock, "rxonly", cpu=BACKEND_CPU).start()
        else:
            backend = lab.vhost_backend(sock, "txonly", cpu=BACKEND_CPU, txpkts=size).start()
    else:
        if workload == "W1":
            ports = [f"vhost:{sock},name=vm", "sink:name=sink"]
        else:
            ports = [f"gen:dst={GEN_DST},src={GEN_SRC},size={size},name=gen",
                     f"vhost:{sock},name=vm"]
        backend = lab.ferry(ports, cpu=BACKEND_CPU, taskset=str(BACKEND_CPU), binary=binary)
    h.wait_for_socket(sock, proc=backend)

    fe_kw = {"mrg_rxbuf": True} if size > 1518 else {}
    if packed:
        # VIRTIO_F_RING_PACKED: both back-ends offer it, the front-end takes it.
        fe_kw["packed_vq"] = True
    if not in_order:
        # VIRTIO_F_IN_ORDER refused: the front-end's standard paths, whatever the back-end offers.
        fe_kw["in_order"] = False
    if workload == "W1":
        fe = lab.virtio_user(sock, "txonly", cpu=FRONTEND_CPU, txpkts=size, **fe_kw).start()
        direction = "tx"
    else:
        fe = lab.virtio_user(sock, "rxonly", cpu=FRONTEND_CPU, **fe_kw).start()
        direction = "rx"

    time.sleep(warmup)
    before = _backend_counter(impl, backend, workload)
    t_before = time.monotonic()
    load = OtherLoad([backend.pid, fe.pid], backend=backend.pid).start()
    recorder = start_frontend_profile(profile, duration) if profile else None
    threads = {int(t) for t in os.listdir(f"/proc/{fe.pid}/task")} if profile else set()
    result = fe.measure(direction, warmup=0, duration=duration)
    if recorder:
        recorder.wait()
    other = load.stop()
    after = _backend_counter(impl, backend, workload)
    t_after = time.monotonic()
    totals = fe.stop()
    backend.stop()
    out = {"mpps": result["median"] / 1e6, "samples": result["samples"],
           # CPU time used by anything else while we measured, in CPUs (0.0 = quiet machine)
           "other_cpus": other, "backend_cpus": load.backend_cpus}
    if workload == "W1" and totals.get("TX-total"):
        # txonly frees the frames the ring had no room for (TX-dropped): the share of the
        # front-end's work spent while the back-end still held the ring. Near 0, the front-end
        # sets the rate; high, the back-end (or whatever took its CPU) does. Whole run, warm-up too.
        out["ring_full"] = totals.get("TX-dropped", 0) / totals["TX-total"]
    if before is not None and after is not None and (impl != "dpdk" or after > 0):
        out["backend_mpps"] = (after - before) / (t_after - t_before) / 1e6
    if profile:
        out["frontend_ns"] = frontend_ns_per_frame(profile, sum(result["samples"]), len(result["samples"]),
                                                   threads)
    return out


def start_frontend_profile(path: str, duration: float) -> subprocess.Popen:
    """perf record of the front-end's CPU for `duration` seconds into `path`."""
    return subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(PROFILE_RATE),
                             "-C", str(FRONTEND_CPU), "-o", path, "--", "sleep", f"{duration:g}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def frontend_ns_per_frame(path: str, frames: float, seconds: int, threads: set) -> dict:
    """The front-end's CPU time per frame sent, in all ("total") and per "dso address" (or
    symbol): the share of its CPU's samples that fell in the front-end's `threads` there, times
    the seconds per frame, so the timer's own rate in a VM does not matter and another process
    on that CPU only shows as the share the front-end did not get. {} when perf has nothing to say."""
    report = subprocess.run(["perf", "report", "-i", path, "--stdio", "-n", "-q", "--sort", "pid,dso,sym"],
                            capture_output=True, text=True).stdout
    counts: dict[str, int] = {}
    total = 0
    for line in report.splitlines():
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+(\d+):.*?\s{2,}(\S+)\s+\[.\]\s+(\S+)", line)
        if not m:
            continue
        n = int(m.group(1))
        total += n
        if int(m.group(2)) in threads:
            key = f"{m.group(3)} {m.group(4)}"
            counts[key] = counts.get(key, 0) + n
    if not total or not frames or not counts:
        return {}
    ns_per_frame = seconds * 1e9 / frames
    out = {"total": sum(counts.values()) / total * ns_per_frame}
    for key, n in sorted(counts.items(), key=lambda kv: -kv[1])[:PROFILE_KEPT]:
        out[key] = n / total * ns_per_frame
    return out


def frontend_note(m: dict) -> list:
    ns = m.get("frontend_ns")
    if not ns:
        return []
    top = ", ".join(f"{k.replace('0x0000000000', '0x')} {v:.1f}"
                    for k, v in list(ns.items())[1:PROFILE_TOP + 1])
    return [f"front-end {ns['total']:.1f} ns/frame ({top})"]


def _backend_counter(impl: str, backend, workload: str):
    """The back-end's own frame counter (cross-check; includes warm-up time)."""
    try:
        if impl != "dpdk":
            vm = backend.port("vm")
            return vm["rx_packets"] if workload == "W1" else vm["tx_packets"]
        key = "RX-packets" if workload == "W1" else "TX-packets"
        return backend.nic_value(key)
    except Exception:
        return None


def run_one(args, rnd: int, workload: str, size: int, impl: str) -> dict:
    profile = (os.path.join(args.profile_frontend, f"{workload}-{size}-{impl}-round{rnd + 1}.data")
               if args.profile_frontend else None)
    return least_noisy(
        args, f"round {rnd + 1} {workload} {size:>5} B {impl:5}",
        lambda lab: measure(impl, workload, size, args.warmup, args.duration, lab, args.packed,
                            args.in_order == "on", ferry_binary_of(impl, args), profile),
        lambda m: ([f"back-end's count {m['backend_mpps']:.2f}"] if "backend_mpps" in m else [])
        + ([f"front-end's frames refused, ring full {100 * m['ring_full']:.1f} %"] if "ring_full" in m else [])
        + frontend_note(m))


def print_frontend_table(results: dict, impls: list):
    """Per workload and size: the front-end's ns per frame with each back-end (median over
    rounds), in all and at every address that was among a measurement's busiest."""
    for (workload, size) in sorted({(w, s) for (w, s, _) in results}):
        per_impl = {impl: [m["frontend_ns"] for m in results.get((workload, size, impl), [])
                           if m.get("frontend_ns")] for impl in impls}
        keys = ["total"] + sorted({k for runs in per_impl.values() for ns in runs
                                   for k in list(ns)[1:PROFILE_TOP + 1]})
        print(f"\nfront-end ns per frame sent, {workload} {size} B (median over rounds)")
        print(f"{'':44}" + "".join(f"{impl:>9}" for impl in impls))
        for key in keys:
            cells = []
            for impl in impls:
                values = sorted(ns.get(key, 0.0) for ns in per_impl[impl])
                cells.append(f"{values[len(values) // 2]:9.2f}" if values else f"{'-':>9}")
            print(f"{key.replace('0x0000000000', '0x')[:44]:44}" + "".join(cells))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["ferry", "dpdk"])
    ap.add_argument("--workloads", default="W1,W2")
    ap.add_argument("--packed", action="store_true", help="packed virtqueues (virtio-user packed_vq=1)")
    ap.add_argument("--in-order", choices=["on", "off"], default="on",
                    help="off: the front-end refuses VIRTIO_F_IN_ORDER (virtio-user in_order=0); "
                         "on: it takes it where the back-end offers it (its default)")
    ap.add_argument("--profile-frontend", metavar="DIR",
                    help="perf record the front-end's CPU in every measurement (files in DIR) and print "
                         "its ns per frame, in all and at its busiest addresses")
    add_run_options(ap)
    add_other_option(ap)
    args = parse_run_options(ap)
    if args.profile_frontend:
        if not shutil.which("perf"):
            print("bench-vhost: --profile-frontend needs perf", file=sys.stderr)
            return 2
        os.makedirs(args.profile_frontend, exist_ok=True)
    sizes = args.size_list
    workloads = [w.strip().upper() for w in args.workloads.split(",")]
    impls = with_other([args.only] if args.only else ["ferry", "dpdk"], args)

    problems = h.environment_problems(need_ferry="ferry" in impls)
    if problems:
        print("bench-vhost: cannot run:\n  " + "\n  ".join(problems), file=sys.stderr)
        if "ferry" in impls and not args.only:
            print("  (--only dpdk runs the DPDK reference rows alone)", file=sys.stderr)
        return 2
    if os.cpu_count() and os.cpu_count() < 2:
        print("bench-vhost: needs 2 CPUs", file=sys.stderr)
        return 2

    begin_run(f"# testpmd memory: {h.memory_mode()}; back-end CPU {BACKEND_CPU}, front-end CPU "
              f"{FRONTEND_CPU}; {'packed' if args.packed else 'split'} rings, front-end in_order {args.in_order}; {args.rounds} round(s), "
              f"warm-up {args.warmup:g} s, "
              f"{args.duration:g} s per measurement")
    # (workload, size, impl) -> [measurement per round]
    results, failed = run_rounds(args.rounds, [(w, s) for w in workloads for s in sizes],
                                 lambda cell: impls,
                                 lambda rnd, w, s, impl: run_one(args, rnd, w, s, impl))

    # Table
    print()
    print(f"{'workload':32} {'size':>5}  {'Ferry best':>10} {'Ferry med':>9}  "
          f"{'DPDK best':>9} {'DPDK med':>9}  {'Ferry/DPDK':>10}")
    summary = []
    for workload in workloads:
        for size in sizes:
            row = summarize({"workload": workload, "size": size},
                            {impl: results.get((workload, size, impl), [])
                             for impl in ("ferry", "dpdk", "other")})
            row["ratio"] = ratio(row["ferry_best"], row["dpdk_best"])
            summary.append(row)
            label = f"{workload} {WORKLOADS.get(workload, '')}"
            print(f"{label:32} {size:>5}  {fmt(row['ferry_best'], 10)} "
                  f"{fmt(row['ferry_median'])}  {fmt(row['dpdk_best'])} "
                  f"{fmt(row['dpdk_median'])}  {fmt(row['ratio'], 10)}{noisy_note(row)}")
    print("(Mpps: best and median over rounds of each measurement's median per-second reading "
          "of the front-end; 'noisy' = other processes used > "
          f"{NOISY:.2f} CPU during a measurement)")
    if "dpdk" in impls:
        print_round_table(results, [(w, s) for w in workloads for s in sizes],
                          lambda cell: f"{cell[0]} {WORKLOADS.get(cell[0], '')}")
    if args.other:
        print_other_table(summary, lambda row: f"{row['workload']} {WORKLOADS.get(row['workload'], '')}",
                          args.other)
    if args.profile_frontend:
        print_frontend_table(results, impls)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary,
                       "measurements": [{"workload": w, "size": s, "impl": i, "rounds": ms}
                                        for (w, s, i), ms in results.items()]}, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
