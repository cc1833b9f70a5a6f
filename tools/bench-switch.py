#!/usr/bin/env python3
"""Ferry as a switch against DPDK testpmd (io forwarding) and, for TAPs, the raw TAP limit.

The back-end under test runs on CPU 0 in one process (Ferry: `taskset -c 0` and `--cpu 0`;
DPDK: testpmd `--lcores 0@0,1@0`, whose main lcore only sleeps), the front-end on CPU 1.
Ferry, DPDK (and the raw TAP tools) alternate within each round.

  W3    guest -> guest through the switch, learning on.
        Back-end: Ferry `--port vhost:A,name=a --port vhost:B,name=b`; DPDK testpmd net_vhost0 (A)
        + net_vhost1 (B), io. Front-end: tools/dpdk-pair-frontend.c, ONE process on CPU 1 with
        two virtio-user ports; it sends a few frames from B first (so B is learned behind b),
        then A -> B; counted as rx at B.
  W3io  (opt-in) the same back-ends, front-end testpmd with both virtio-user ports in io mode
        with --tx-first (frames circulate); per-port Rx-pps.
  W4tx  guest -> TAP. Back-end: Ferry `--port vhost:S,name=g --port tap:T,name=t`; DPDK net_vhost0
        + net_tap0, io; raw: tools/tap-raw.c write(). Front-end testpmd virtio-user txonly;
        counted as the TAP's rx_packets (frames the kernel took in) in /sys/class/net/T.
  W4rx  TAP -> guest. Same back-ends; raw: tap-raw read(). tools/afpacket-send.c (AF_PACKET,
        sendmmsg, qdisc bypass) feeds the TAP from the kernel side on CPU 1; the front-end is
        testpmd virtio-user rxonly on CPU 1 too; counted at the front-end (raw: at the reader,
        with a spinner on CPU 1 in the front-end's place so the sender gets the same CPU share).

The TAP stays in the root network namespace: it is created there by the back-end (Ferry,
net_tap or tap-raw), and net_tap drives its interface by name with ioctls in its own
namespace. IPv6 is switched off on it so the kernel adds no frames of its own.

    sudo tools/bench-switch.py                       # 3 rounds, W3 and W4, all back-ends
    sudo tools/bench-switch.py --only W3 --rounds 5
    sudo tools/bench-switch.py --only W4 --impls dpdk,raw --sizes 64
    sudo tools/bench-switch.py --other /tmp/ferry-old   # and the build before a change, alternating

FERRY_BIN overrides the Ferry binary, FERRY_ARGS adds `ferry run` options; FERRY_TESTPMD_MEM=nohuge|huge|auto testpmd's memory.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (FERRIES, NOISY, OtherLoad, Tool, Unsupported, add_other_option,  # noqa: E402
                      add_run_options, begin_run, build_tool, counter_rates, dpdk_vhost_port,
                      ferry_binary_of, fmt, h, least_noisy, noisy_note, parse_run_options,
                      print_other_table, print_round_table, ratio, run_rounds, summarize,
                      with_other)

BACKEND_CPU = 0
FRONTEND_CPU = 1
TAP_MAX_FRAME = 1514  # a 1500-byte MTU TAP: AF_PACKET refuses anything longer
WORKLOADS = {
    "W3": "guest -> guest (learning)",
    "W3io": "guest <-> guest, testpmd io",
    "W4tx": "guest -> TAP",
    "W4rx": "TAP -> guest",
}
IMPLS = {"W3": ("ferry", "other", "dpdk"), "W3io": ("ferry", "other", "dpdk"),
         "W4tx": ("ferry", "other", "dpdk", "raw"), "W4rx": ("ferry", "other", "dpdk", "raw")}
# The bars, Ferry/DPDK at 64 B, and the goal against the raw TAP limit.
BARS = {"W4tx": 1.0, "W4rx": 2.0}
RAW_GOAL = 0.9
# DPDK's own rate (Mpps) under which a quiet machine is in its slow state (issue 14: DPDK's
# W3 64 B 7.8-7.9 slow, 9.9-11.6 fast): the round-by-round table labels each round by it.
SLOW_STATE_BELOW = {("W3", 64): 9.5}

_tap_counter = itertools.count()


# --------------------------------------------------------------------------- helpers


def dpdk_eal(prefix: str, cpu: int, vdevs: list[str]) -> list[str]:
    """EAL arguments for one of our DPDK tools: one lcore, the harness's memory mode."""
    args = ["--lcores", f"0@{cpu}", "--no-pci", f"--file-prefix={prefix}"]
    for v in vdevs:
        args += ["--vdev", v]
    if h.memory_mode() == "huge":
        args += ["-m", "512", "--single-file-segments", "--huge-dir", h.hugetlbfs_mount()]
    else:
        args += ["--no-huge", "-m", "512", "--single-file-segments"]
    return args + ["--log-level=lib.eal:notice"]


class DpdkTool(Tool):
    """A Tool that is a DPDK process: its runtime directory goes when it exits."""

    def __init__(self, cmd, log_path, name, prefix):
        super().__init__(cmd, log_path, name)
        self.prefix = prefix

    def _after_exit(self):
        super()._after_exit()
        import shutil
        shutil.rmtree(h.DPDK_RUNTIME / self.prefix, ignore_errors=True)


def tap_name() -> str:
    return f"fb{os.getpid() % 100000}t{next(_tap_counter)}"[:15]


def tap_stat(tap: str, key: str) -> int:
    with open(f"/sys/class/net/{tap}/statistics/{key}") as f:
        return int(f.read())


def prepare_tap(tap: str, proc, timeout: float = 20.0):
    """Wait for the back-end's TAP, switch IPv6 off on it (no RS/DAD/MLD frames of the kernel's
    own in the counts) and make sure it is up."""
    def exists():
        if proc is not None and proc.exited():
            raise h.HarnessError(f"{proc.name} exited before creating TAP {tap}\n"
                                 f"{proc.log_tail()}")
        return os.path.exists(f"/sys/class/net/{tap}")
    h.wait_until(exists, timeout, f"TAP {tap}")
    try:
        with open(f"/proc/sys/net/ipv6/conf/{tap}/disable_ipv6", "w") as f:
            f.write("1")
    except FileNotFoundError:
        pass  # no IPv6 in this kernel
    subprocess.run(["ip", "link", "set", "dev", tap, "up"], check=True, capture_output=True)


def remove_tap(tap: str):
    """A TAP its back-end left behind (they are not persistent: normally gone already)."""
    if os.path.exists(f"/sys/class/net/{tap}"):
        subprocess.run(["ip", "link", "del", "dev", tap], capture_output=True)


def ferry_counter(be, port: str, key: str):
    try:
        return be.port(port)[key]
    except Exception:
        return None


def start_backend(impl: str, lab: h.Lab, ports: dict, tap: str | None = None,
                  raw_cmd: list[str] | None = None, binary: str | None = None):
    """ports: name -> vhost socket. Ferry gets `vhost:PATH,name=NAME` per socket and
    `tap:TAP,name=t`; DPDK net_vhostN per socket and net_tap0; raw runs raw_cmd."""
    if impl in FERRIES:
        specs = [f"vhost:{path},name={name}" for name, path in ports.items()]
        if tap:
            specs.append(f"tap:{tap},name=t")
        try:
            return lab.ferry(specs, cpu=BACKEND_CPU, taskset=str(BACKEND_CPU),
                             extra_args=os.environ.get("FERRY_ARGS", "").split(), binary=binary)
        except h.FerryError as exc:
            if "unknown port type 'tap'" in str(exc):
                raise Unsupported("this Ferry has no tap: port (`ferry run --port tap:NAME` "
                                  "says: unknown port type 'tap')") from None
            raise
    if impl == "dpdk":
        paths = list(ports.values())
        extra = []
        for i, path in enumerate(paths[1:], start=1):
            extra += ["--vdev", f"net_vhost{i},iface={path}"]
        if tap:
            extra += ["--vdev", f"net_tap0,iface={tap}"]
        be = lab.vhost_backend(paths[0], "io", cpu=BACKEND_CPU, extra_eal=extra)
        be.owned_sockets += paths[1:]
        return be.start()
    tool = Tool(["taskset", "-c", str(BACKEND_CPU)] + raw_cmd, lab._log("tap-raw"), "tap-raw")
    lab.procs.append(tool)
    return tool.start()


# --------------------------------------------------------------------------- workloads


def measure_w3(impl: str, size: int, args, lab: h.Lab, tools: dict) -> dict:
    a, b = lab.path("a.sock"), lab.path("b.sock")
    ports = {"a": a}
    if impl in FERRIES:
        # --w3-ports: a is the first port, b the last, idle vhost ports without a front-end between.
        ports.update({f"p{i}": lab.path(f"p{i}.sock") for i in range(1, args.w3_ports - 1)})
    ports["b"] = b
    be = start_backend(impl, lab, ports, binary=ferry_binary_of(impl, args))
    h.wait_for_socket(a, proc=be)
    h.wait_for_socket(b, proc=be)
    prefix = f"ferry-{os.getpid()}-pair{next(_tap_counter)}"
    # --in-order off: the guests refuse VIRTIO_F_IN_ORDER and run their standard paths.
    devargs = ",in_order=0" if args.in_order == "off" else ""
    cmd = (["taskset", "-c", str(FRONTEND_CPU), tools["pair"]]
           + dpdk_eal(prefix, FRONTEND_CPU, [f"net_virtio_user0,path={a}{devargs}",
                                             f"net_virtio_user1,path={b}{devargs}"])
           + ["--", "--size", str(size), "--duration", str(args.warmup + args.duration)])
    fe = DpdkTool(cmd, lab._log("pair-frontend"), "pair-frontend", prefix)
    lab.procs.append(fe)
    fe.start(timeout=60)
    learn = fe.wait_for("LEARN", 30)
    load = OtherLoad([be.pid, fe.pid], backend=be.pid).start()
    time.sleep(args.warmup)
    c0, t0 = ferry_counter(be, "b", "tx_packets") if impl in FERRIES else None, time.monotonic()
    total = fe.wait_for("TOTAL", args.duration + 30)
    c1, t1 = ferry_counter(be, "b", "tx_packets") if impl in FERRIES else None, time.monotonic()
    other = load.stop()
    samples = [s["rx"] for s in fe.samples if s["t"] > args.warmup + 0.5]
    if not samples:
        raise h.HarnessError(f"the front-end printed no rate after the warm-up\n{fe.log_tail()}")
    out = {"mpps": h.median(samples) / 1e6, "samples": samples, "other_cpus": other,
           "backend_cpus": load.backend_cpus,
           "learn_sent": learn.get("sent"), "frontend_total": total}
    if c0 is not None and c1 is not None and c1 > c0:
        out["backend_mpps"] = (c1 - c0) / (t1 - t0) / 1e6
    elif impl == "dpdk":
        # testpmd's own per-second Tx-pps on port 1 (B): its NIC totals are only printed
        # once a second, too coarse to difference over a few seconds
        be_tx = be.pps_samples("tx", since=t0, until=t1, port=1)
        if be_tx:
            out["backend_mpps"] = h.median(be_tx) / 1e6
    if not total.get("rx"):
        raise h.HarnessError(f"no frame reached guest B (TOTAL {total})\n{fe.log_tail()}")
    return out


def measure_w3io(impl: str, size: int, args, lab: h.Lab, tools: dict) -> dict:
    a, b = lab.path("a.sock"), lab.path("b.sock")
    be = start_backend(impl, lab, {"a": a, "b": b}, binary=ferry_binary_of(impl, args))
    h.wait_for_socket(a, proc=be)
    h.wait_for_socket(b, proc=be)
    fe = lab.virtio_user(a, "io", cpu=FRONTEND_CPU, txpkts=size,
                         extra_eal=["--vdev", f"net_virtio_user1,path={b}"],
                         extra_app=["--tx-first"]).start()
    load = OtherLoad([be.pid, fe.pid], backend=be.pid).start()
    time.sleep(args.warmup)
    t0 = time.monotonic()
    n = max(1, int(round(args.duration)))
    fe.wait_samples(n, t0, args.duration + 10, port=1)
    fe.wait_samples(n, t0, 10, port=0)
    per_port = [fe.pps_samples("rx", since=t0, port=p)[:n] for p in (0, 1)]
    other = load.stop()
    samples = [(x + y) / 2 for x, y in zip(*per_port)]
    return {"mpps": h.median(samples) / 1e6, "samples": samples, "other_cpus": other,
            "backend_cpus": load.backend_cpus,
            "port_mpps": [h.median(s) / 1e6 for s in per_port]}


def measure_w4tx(impl: str, size: int, args, lab: h.Lab, tools: dict) -> dict:
    sock, tap = lab.path("g.sock"), tap_name()
    lab.after_close.append(lambda: remove_tap(tap))
    raw_cmd = [tools["tap-raw"], "write", tap, str(args.warmup + args.duration + 30), str(size)]
    be = start_backend(impl, lab, {"g": sock}, tap=tap, raw_cmd=raw_cmd, binary=ferry_binary_of(impl, args))
    prepare_tap(tap, be)
    pids = [be.pid]
    fe = None
    if impl != "raw":
        h.wait_for_socket(sock, proc=be)
        fe = lab.virtio_user(sock, "txonly", cpu=FRONTEND_CPU, txpkts=size).start()
        pids.append(fe.pid)
    load = OtherLoad(pids, backend=be.pid).start()
    time.sleep(args.warmup)
    d0 = tap_stat(tap, "rx_dropped")
    t0 = time.monotonic()
    samples = counter_rates(lambda: tap_stat(tap, "rx_packets"), args.duration)
    dropped = tap_stat(tap, "rx_dropped") - d0
    other = load.stop()
    out = {"mpps": h.median(samples) / 1e6, "samples": samples, "other_cpus": other,
           "backend_cpus": load.backend_cpus,
           "tap_rx_dropped": dropped}
    if fe is not None:
        out["frontend_tx_mpps"] = h.median(fe.pps_samples("tx", since=t0)) / 1e6
    if impl in FERRIES:
        out["backend_ports"] = {p: be.port(p) for p in ("g", "t")}
    if out["mpps"] <= 0:
        raise h.HarnessError(f"nothing arrived at TAP {tap}\n{lab.logs(15)}")
    return out


def measure_w4rx(impl: str, size: int, args, lab: h.Lab, tools: dict) -> dict:
    sock, tap = lab.path("g.sock"), tap_name()
    lab.after_close.append(lambda: remove_tap(tap))
    long = str(args.warmup + args.duration + 30)
    raw_cmd = [tools["tap-raw"], "read", tap, long]
    be = start_backend(impl, lab, {"g": sock}, tap=tap, raw_cmd=raw_cmd, binary=ferry_binary_of(impl, args))
    prepare_tap(tap, be)
    pids = [be.pid]
    fe = None
    if impl != "raw":
        h.wait_for_socket(sock, proc=be)
        # The guest's receive ring: while it shares CPU 1 with the sender it is descheduled for
        # milliseconds at a time, and a 256-entry ring fills in half of one.
        ring = args.rx_ring
        fe = lab.virtio_user(sock, "rxonly", cpu=FRONTEND_CPU, queue_size=ring,
                             extra_app=[f"--rxd={ring}"] if ring else []).start()
        pids.append(fe.pid)
    if impl == "raw":
        # The sender shares CPU 1 with the polling front-end when a back-end is measured;
        # a spinner in the front-end's place gives it the same share here.
        spinner = Tool(["taskset", "-c", str(FRONTEND_CPU), "sh", "-c", "while :; do :; done"],
                       lab._log("spinner"), "spinner")
        lab.procs.append(spinner)
        spinner.start(wait_ready=False)
        pids.append(spinner.pid)
    sender = Tool(["taskset", "-c", str(FRONTEND_CPU), tools["afpacket-send"], tap, long,
                   str(size)], lab._log("afpacket-send"), "afpacket-send")
    lab.procs.append(sender)
    sender.start()
    pids.append(sender.pid)
    load = OtherLoad(pids, backend=be.pid).start()
    time.sleep(args.warmup)
    t0 = time.monotonic()
    k0 = {k: tap_stat(tap, k) for k in ("tx_packets", "tx_dropped")}
    if impl == "raw":
        time.sleep(args.duration + 0.5)
        samples = be.values("rx", since=t0)[:int(round(args.duration))]
    else:
        samples = fe.measure("rx", warmup=0, duration=args.duration)["samples"]
    t1 = time.monotonic()
    k1 = {k: tap_stat(tap, k) for k in ("tx_packets", "tx_dropped")}
    sent = sender.values("tx", since=t0)
    other = load.stop()
    if not samples:
        raise h.HarnessError(f"no rate readings at the receiver\n{lab.logs(15)}")
    out = {"mpps": h.median(samples) / 1e6, "samples": samples, "other_cpus": other,
           "backend_cpus": load.backend_cpus,
           # what the kernel queued for the back-end, and what it dropped because the
           # back-end's queue was full (the sender outran the back-end when > 0)
           "tap_tx_mpps": (k1["tx_packets"] - k0["tx_packets"]) / (t1 - t0) / 1e6,
           "tap_tx_dropped_mpps": (k1["tx_dropped"] - k0["tx_dropped"]) / (t1 - t0) / 1e6,
           "sender_mpps": h.median(sent) / 1e6 if sent else None}
    if impl in FERRIES:
        out["backend_ports"] = {p: be.port(p) for p in ("g", "t")}
    elif impl == "dpdk":
        port = dpdk_vhost_port(be)
        out["backend_vhost_port"] = port
        tx = be.nic_value("TX-packets", port=port)
        if tx is not None:
            out["backend_tx_total"] = tx
    if out["mpps"] <= 0:
        raise h.HarnessError(f"nothing arrived at the receiver\n{lab.logs(15)}")
    return out


MEASURE = {"W3": measure_w3, "W3io": measure_w3io, "W4tx": measure_w4tx, "W4rx": measure_w4rx}


# --------------------------------------------------------------------------- driver


def notes(m: dict) -> list[str]:
    """The cross-checks of one measurement, for its progress line."""
    out = []
    if "backend_mpps" in m:
        out.append(f"back-end's count {m['backend_mpps']:.2f}")
    if "port_mpps" in m:
        out.append(f"per port {[round(v, 2) for v in m['port_mpps']]}")
    if "frontend_tx_mpps" in m:
        out.append(f"front-end tx {m['frontend_tx_mpps']:.2f}")
    if "tap_rx_dropped" in m:
        out.append(f"TAP rx_dropped {m['tap_rx_dropped']}")
    if "tap_tx_mpps" in m:
        out.append(f"sender {fmt(m['sender_mpps'], 5).strip()}, TAP queued "
                   f"{m['tap_tx_mpps']:.3f}, dropped {m['tap_tx_dropped_mpps']:.3f} "
                   "(reader behind)")
    return out


def run_one(args, rnd: int, workload: str, size: int, impl: str, tools: dict,
            unsupported: dict) -> dict:
    tag = f"round {rnd + 1} {workload:5} {size:>5} B {impl:5}"
    if (impl, workload) in unsupported:
        print(f"{tag}: NOT RUN: {unsupported[(impl, workload)]}", file=sys.stderr, flush=True)
        return {"error": unsupported[(impl, workload)]}
    m = least_noisy(args, tag, lambda lab: MEASURE[workload](impl, size, args, lab, tools),
                    notes, lab_tag="bsw")
    if m.get("unsupported"):
        # a Ferry without tap: ports can run none of the TAP workloads
        for w in WORKLOADS:
            if w.startswith("W4"):
                unsupported[(impl, w)] = m["error"]
    return m


def expand_workloads(text: str) -> list[str]:
    out = []
    for w in (x.strip() for x in text.split(",") if x.strip()):
        key = {k.lower(): k for k in WORKLOADS}.get(w.lower())
        if w.upper() == "W4":
            out += ["W4tx", "W4rx"]
        elif key:
            out.append(key)
        else:
            raise SystemExit(f"bench-switch: unknown workload {w!r} "
                             f"(W3, W3io, W4 = W4tx + W4rx)")
    return list(dict.fromkeys(out))


def requirements(impls: set, workloads: list[str]) -> list[str]:
    problems = h.environment_problems(need_ferry="ferry" in impls,
                                      need_testpmd=bool(impls & {"ferry", "other", "dpdk"}))
    if (os.cpu_count() or 1) < 2:
        problems.append("needs 2 CPUs (back-end on CPU 0, front-end on CPU 1)")
    if any(w.startswith("W4") for w in workloads) and not os.path.exists("/dev/net/tun"):
        problems.append("/dev/net/tun missing (modprobe tun)")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="W3,W4", metavar="W,...",
                    help="workloads: W3, W3io, W4 (= W4tx,W4rx), W4tx, W4rx (default W3,W4)")
    ap.add_argument("--impls", default="ferry,dpdk,raw",
                    help="back-ends to run: ferry, dpdk, raw (raw: W4 only)")
    add_run_options(ap, sizes_help=f"frame sizes without FCS; W4 caps them at {TAP_MAX_FRAME}")
    add_other_option(ap)
    ap.add_argument("--rx-ring", type=int, default=4096, metavar="N",
                    help="W4rx: the guest's receive ring size (virtio-user queue_size and --rxd); "
                         "0 keeps testpmd's default (256)")
    ap.add_argument("--w3-ports", type=int, default=2, metavar="N",
                    help="W3: Ferry (and --other) with N vhost ports, guest A on the first and B on the "
                         "last, the others idle (2...1024; DPDK keeps 2)")
    ap.add_argument("--in-order", choices=["on", "off"], default="on",
                    help="W3: off makes both guests refuse VIRTIO_F_IN_ORDER (virtio-user in_order=0); "
                         "on lets them take it where the back-end offers it (their default)")
    args = parse_run_options(ap)
    if not 2 <= args.w3_ports <= 1024:
        ap.error("--w3-ports must be 2...1024")
    sizes = args.size_list
    workloads = expand_workloads(args.only)
    impls = with_other([i.strip() for i in args.impls.split(",") if i.strip()], args)
    for i in impls:
        if i not in ("ferry", "dpdk", "raw", "other"):
            ap.error(f"unknown back-end {i!r} (ferry, dpdk, raw)")
    wanted = {i for w in workloads for i in IMPLS[w] if i in impls}

    problems = requirements(wanted, workloads)
    tools = {}
    if not problems:
        try:
            if "W3" in workloads:
                tools["pair"] = build_tool("dpdk-pair-frontend", dpdk=True)
            if any(w.startswith("W4") for w in workloads):
                tools["tap-raw"] = build_tool("tap-raw")
                tools["afpacket-send"] = build_tool("afpacket-send")
        except h.HarnessError as exc:
            problems.append(str(exc))
    if problems:
        print("bench-switch: cannot run:\n  " + "\n  ".join(problems), file=sys.stderr)
        if "ferry" in wanted:
            print("  (--impls dpdk,raw runs the reference rows alone)", file=sys.stderr)
        return 2

    begin_run(f"# testpmd memory: {h.memory_mode()}; back-end CPU {BACKEND_CPU}, front-end CPU "
              f"{FRONTEND_CPU}; W3 front-end in_order {args.in_order}; {args.rounds} round(s), warm-up {args.warmup:g} s, "
              f"{args.duration:g} s per measurement")

    def sizes_of(w):
        return list(dict.fromkeys(min(s, TAP_MAX_FRAME) if w.startswith("W4") else s
                                  for s in sizes))

    unsupported: dict = {}
    # (workload, size, impl) -> [measurement per round]
    results, failed = run_rounds(
        args.rounds, [(w, s) for w in workloads for s in sizes_of(w)],
        lambda cell: [i for i in IMPLS[cell[0]] if i in impls],
        lambda rnd, w, s, impl: run_one(args, rnd, w, s, impl, tools, unsupported))

    # Table
    print()
    print(f"{'workload':30} {'size':>5}  {'Ferry best':>10} {'Ferry med':>9}  "
          f"{'DPDK best':>9} {'DPDK med':>9}  {'Ferry/DPDK':>10}  {'raw best':>8} "
          f"{'Ferry/raw':>9} {'DPDK/raw':>8}")
    summary = []
    for workload in workloads:
        for size in sizes_of(workload):
            row = summarize({"workload": workload, "size": size},
                            {impl: results.get((workload, size, impl), [])
                             for impl in ("ferry", "dpdk", "raw", "other")})
            row["ratio"] = ratio(row["ferry_best"], row["dpdk_best"])
            row["ferry_raw"] = ratio(row["ferry_best"], row["raw_best"])
            row["dpdk_raw"] = ratio(row["dpdk_best"], row["raw_best"])
            summary.append(row)
            label = f"{workload} {WORKLOADS[workload]}"
            print(f"{label:30} {size:>5}  {fmt(row['ferry_best'], 10)} "
                  f"{fmt(row['ferry_median'])}  {fmt(row['dpdk_best'])} "
                  f"{fmt(row['dpdk_median'])}  {fmt(row['ratio'], 10)}  "
                  f"{fmt(row['raw_best'], 8)} {fmt(row['ferry_raw'])} {fmt(row['dpdk_raw'], 8)}"
                  f"{noisy_note(row)}")
    print("(Mpps: best and median over rounds of each measurement's median per-second reading; "
          "W3 at guest B, W4tx at the TAP's rx_packets, W4rx at the guest (raw: the reader); "
          f"'noisy' = other processes used > {NOISY:.2f} CPU during a measurement)")
    for row in summary:
        bar = BARS.get(row["workload"])
        if bar and row["size"] == 64:
            r = row["ratio"]
            print(f"# {row['workload']} 64 B bars: Ferry/DPDK {fmt(r, 4).strip()} "
                  f"(bar >= {bar:.1f}), Ferry/raw {fmt(row['ferry_raw'], 4).strip()} "
                  f"(goal >= {RAW_GOAL})")
    if "dpdk" in impls:
        print_round_table(results, [(w, s) for w in workloads for s in sizes_of(w)],
                          lambda cell: f"{cell[0]} {WORKLOADS[cell[0]]}", SLOW_STATE_BELOW, 30)
    if args.other:
        print_other_table(summary, lambda row: f"{row['workload']} {WORKLOADS[row['workload']]}",
                          args.other, 30)
    for (impl, workload), why in sorted(unsupported.items()):
        if workload in workloads:
            print(f"# NOT RUN: {impl} {workload}: {why}", file=sys.stderr)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary,
                       "not_run": {f"{i} {w}": why for (i, w), why in unsupported.items()},
                       "measurements": [{"workload": w, "size": s, "impl": i, "rounds": ms}
                                        for (w, s, i), ms in results.items()]}, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
