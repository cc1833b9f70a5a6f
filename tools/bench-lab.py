#!/usr/bin/env python3
"""NDR, PDR and latency of Ferry's workloads, measured with `ferry lab latency` (docs/LAB.md).

The lab's Ferry runs on CPU 0 (generator, switch, analyser in one process); the device that
loops the frames back runs on CPU 1:

  W1+W2  gen -> vhost -> testpmd virtio-user macswap -> vhost -> sink: into a guest's rings (W2)
         and out of them (W1), one guest;
  W3     gen (VLAN 10) -> vhost A -> testpmd io, virtio-user A -> B -> vhost B (VLAN 20) -> sink:
         out of one guest's rings into another's, the guests joined by DPDK testpmd io;
  W4     gen -> tap -> a network namespace's kernel, forwarding -> tap -> sink.

W3 with the switch as the device under test (`--only W3-Ferry,W3-DPDK`, alternating): the lab
drives two virtio-user ports (Ferry as the guests' driver) into a switch on CPU 1 that sits
between them as between two guests: gen (VLAN 10) -> virtio-user A -> DUT -> virtio-user B
(VLAN 20) -> sink. The DUT is another Ferry (`ferry run`, vhost A and B, --idle poll, as DPDK
polls) or dpdk-testpmd io with two net_vhost ports; the table ends with Ferry/DPDK.

A lab's device has its cores to itself; here builds and tests share both CPUs, and a poller in
the fair class waits out their time slices while its ring overflows (a 1024-entry ring lasts 1 ms
at 1 Mpps, a slice is ~3 ms): every trial's loss was the lab's full ring into the device, with
either device. So the lab and the loop or device run at nice -20 (`--nice`), every thread: the
others' tasks still get a slice now and then, so `--queue-size` sets how long the device may be
away without a loss (4096 entries, all posted: 4 ms at 1 Mpps; testpmd as a guest posts 512
unless told, whatever its ring's size).

Each run is one `ferry lab latency`: the NDR search (RFC 2544 binary search, --precision),
the PDR (loss <= 0.5 %), then latency at 10, 50 and 90 % of the NDR. Two runs of each
workload, alternating, so that the second shows how far one run is from another here.

    sudo tools/bench-lab.py                    # every workload, 2 runs each
    sudo tools/bench-lab.py --only W3 --runs 1

FERRY_BIN overrides the Ferry binary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import h  # noqa: E402
import qemu_guest as q  # noqa: E402
import lab_loops  # noqa: E402
from lab_loops import GEN_SRC, LOOP_MAC  # noqa: E402

WORKLOADS = ["W1+W2", "W3", "W4"]


def lab_command(args, ports: list[str], fdb: list[str], out: str) -> list[str]:
    return ["nice", "-n", str(args.nice), h.ferry_binary(), "lab", "latency", *sum((["--port", p] for p in ports), []), *fdb,
            "--duration", str(args.duration), "--precision", str(args.precision), "--rate", args.upper,
            "--cpus", "0", "--json", out]


def run_lab(cmd: list[str], netns: str | None = None) -> dict:
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    with open(cmd[cmd.index("--json") + 1]) as f:
        result = json.load(f)
    result["table"] = p.stdout
    return result


def favour(args, proc):
    """The loop's or the device's every thread at the lab's nice value (Linux: per thread)."""
    for tid in os.listdir(f"/proc/{proc.pid}/task"):
        os.setpriority(os.PRIO_PROCESS, int(tid), args.nice)
    return proc


def guest_buffers(args) -> list[str]:
    """testpmd as a guest posts 512 receive buffers whatever its ring's size unless told."""
    return [f"--rxd={args.queue_size}", f"--txd={args.queue_size}"]


def guest_loop(args, lab: h.Lab) -> dict:
    sock = lab.path("loop.sock")
    tp = lab.virtio_user(sock, "macswap", server=True, cpu=1, queue_size=args.queue_size,
                         extra_app=guest_buffers(args)).start(wait=False)
    h.wait_for_socket(sock, proc=tp)
    favour(args, tp)
    gen = f"gen:dst={LOOP_MAC},src={GEN_SRC},size=64,name=g"
    return run_lab(lab_command(args, [gen, f"vhost:{sock},client,name=vm", "sink:name=s"],
                               ["--fdb", f"{LOOP_MAC},port=vm", "--fdb", f"{GEN_SRC},port=s"],
                               lab.path("w12.json")))


def guest_to_guest(args, lab: h.Lab) -> dict:
    a, b = lab.path("a.sock"), lab.path("b.sock")
    # One testpmd, two virtio-user ports listening (server=1); io forwards 0 -> 1 and 1 -> 0.
    tp = lab.virtio_user(a, "io", server=True, cpu=1, queue_size=args.queue_size, extra_app=guest_buffers(args),
                         extra_eal=["--vdev", f"net_virtio_user1,path={b},server=1,queue_size={args.queue_size}"])
    tp.owned_sockets.append(b)
    tp.start(wait=False)
    # testpmd probes its ports in turn: B's socket appears once Ferry has connected to A
    # (Ferry's client ports keep trying).
    h.wait_for_socket(a, proc=tp)
    favour(args, tp)
    gen = f"gen:dst={LOOP_MAC},src={GEN_SRC},size=64,name=g,vlan=10"
    return run_lab(lab_command(args, [gen, f"vhost:{a},client,name=a,vlan=10", f"vhost:{b},client,name=b,vlan=20",
                                      "sink:name=s,vlan=20"], [], lab.path("w3.json")))


def kernel_loop(args, lab: h.Lab) -> dict:
    ns = q.Netns("benchlab")
    try:
        tap = "blab0"
        lab_loops.kernel_loop(ns, tap)
        gen = f"gen:dst={LOOP_MAC},src={GEN_SRC},size=64,name=g"
        return run_lab(lab_command(args, [gen, f"tap:{tap},name=k", "sink:name=s"],
                                   ["--fdb", f"{LOOP_MAC},port=k", "--fdb", f"{GEN_SRC},port=s"],
                                   lab.path("w4.json")), netns=ns.name)
    finally:
        ns.delete()


def switch_under_test(args, lab: h.Lab, a: str, b: str, name: str) -> dict:
    """The lab's two virtio-user ports into the DUT's sockets `a` and `b`."""
    gen = f"gen:dst={LOOP_MAC},src={GEN_SRC},size=64,name=g,vlan=10"
    q = args.queue_size
    return run_lab(lab_command(args, [gen, f"virtio-user:{a},queue_size={q},name=a,vlan=10",
                                      f"virtio-user:{b},queue_size={q},name=b,vlan=20", "sink:name=s,vlan=20"],
                               [], lab.path(f"{name}.json")))


def ferry_under_test(args, lab: h.Lab) -> dict:
    a, b = lab.path("a.sock"), lab.path("b.sock")
    dut = favour(args, lab.ferry([f"vhost:{a},name=a", f"vhost:{b},name=b"], cpu=1, extra_args=["--idle", "poll"]))
    result = switch_under_test(args, lab, a, b, "w3-ferry")
    # Which side lost the frames the lab counted lost: the device's own drops, by port and reason
    # (the lab's ports' drops are in each trial's `drops`).
    result["device"] = {p["name"]: {"rx": p["rx_packets"], "tx": p["tx_packets"], "drops": p.get("drops") or {}}
                        for p in dut.stats()["ports"]}
    return result


def dpdk_under_test(args, lab: h.Lab) -> dict:
    a, b = lab.path("a.sock"), lab.path("b.sock")
    tp = lab.vhost_backend(a, "io", cpu=1, extra_eal=["--vdev", f"net_vhost1,iface={b}"])
    tp.owned_sockets.append(b)
    tp.start()
    favour(args, tp)
    return switch_under_test(args, lab, a, b, "w3-dpdk")


MEASURE = {"W1+W2": guest_loop, "W3": guest_to_guest, "W4": kernel_loop,
           "W3-Ferry": ferry_under_test, "W3-DPDK": dpdk_under_test}


def summary(result: dict) -> dict:
    trials = {t["purpose"]: t for t in result["trials"]}
    row = {"ndr_mpps": result["ndr_pps"] / 1e6, "pdr_mpps": result["pdr_pps"] / 1e6}
    for pct in (10, 50, 90):
        lat = trials.get(f"latency {pct}%", {}).get("latency", {})
        row[f"lat{pct}"] = tuple(lat.get(k, 0) / 1000 for k in ("p50_ns", "p99_ns", "p99_9_ns"))
    return row


def drops_text(result: dict) -> str:
    """Where the lost frames went: the lab's ports per lossy trial, the device's over the run."""
    lines = [f"  trial {i + 1} drops: {t['drops']}" for i, t in enumerate(result["trials"]) if t.get("drops")]
    if "device" in result:
        lines.append(f"  device under test (whole run): {result['device']}")
    return "".join(line + "\n" for line in lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(WORKLOADS), help="workloads, comma-separated")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--duration", type=float, default=1.0, help="seconds per trial")
    ap.add_argument("--precision", type=float, default=2.0, help="the search's precision, percent")
    ap.add_argument("--upper", default="4Mpps", help="the NDR search's upper bound")
    ap.add_argument("--nice", type=int, default=-20,
                    help="nice value of the lab and the loop or device, every thread (0: as started)")
    ap.add_argument("--queue-size", type=int, default=4096,
                    help="ring size (and buffers posted) of testpmd's guests and the lab's virtio-user ports")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args()
    problems = h.environment_problems()
    if problems:
        print("bench-lab: cannot run:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    only = args.only.split(",")
    print(f"# ferry lab latency, 64 B, lab Ferry CPU 0, loop CPU 1, {args.duration:g} s trials, precision "
          f"{args.precision:g} %, upper bound {args.upper}, nice {args.nice}, rings {args.queue_size}; load average {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[str, list] = {w: [] for w in only}
    failed = False
    for run in range(args.runs):
        for w in (only if run % 2 == 0 else list(reversed(only))):
            lab = h.Lab("benchlab")
            try:
                load = os.getloadavg()[0]
                r = MEASURE[w](args, lab)
                r["load"] = load
                results[w].append(r)
                s = summary(r)
                print(f"run {run + 1} {w}: NDR {s['ndr_mpps']:.3f} Mpps, PDR {s['pdr_mpps']:.3f}; load {load:.2f}\n"
                      f"{r['table']}{drops_text(r)}", flush=True)
            except Exception as exc:
                failed = True
                print(f"run {run + 1} {w}: FAILED {type(exc).__name__}: {exc}\n{lab.logs(20)}", file=sys.stderr, flush=True)
            finally:
                lab.close()
    print(f"\n{'workload':8} {'run':>3} {'NDR Mpps':>9} {'PDR Mpps':>9}   latency p50/p99/p99.9 us at 10 %, 50 %, 90 % of NDR   load")
    for w in only:
        for i, r in enumerate(results[w]):
            s = summary(r)
            lats = "  ".join("/".join(f"{v:.1f}" for v in s[f"lat{p}"]) for p in (10, 50, 90))
            print(f"{w:8} {i + 1:>3} {s['ndr_mpps']:9.3f} {s['pdr_mpps']:9.3f}   {lats}   {r['load']:.2f}")
        ndrs = [r["ndr_pps"] for r in results[w]]
        if len(ndrs) >= 2 and max(ndrs) > 0:
            print(f"{'':8} two runs differ by {(max(ndrs) - min(ndrs)) / max(ndrs):.1%}")
    if results.get("W3-Ferry") and results.get("W3-DPDK"):
        pairs = list(zip(results["W3-Ferry"], results["W3-DPDK"]))
        ratios = [f["ndr_pps"] / d["ndr_pps"] for f, d in pairs if d["ndr_pps"] > 0]
        print("W3 as the device under test, Ferry/DPDK NDR per run: "
              + ", ".join(f"{r:.2f}" for r in ratios))
    print(f"(load average {os.getloadavg()[0]:.2f} after)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
