#!/usr/bin/env python3
"""Ferry's uplink ports (AF_XDP, AF_PACKET) against DPDK testpmd on the same veth.

One veth pair per measurement, `ub-hv` / `ub-lan`, one RX and one TX queue each, made inside
two namespaces of this run's own (ub-hv-PID, ub-lan-PID). The back-end under test runs in the
first, on CPU 0, in one process (Ferry: `taskset -c 0` and `--cpu 0`; DPDK: testpmd
`--lcores 0@0,1@0`, whose main lcore only sleeps); the guest is a testpmd virtio-user front-end
on CPU 1 (root namespace: a vhost-user socket is a path, not an interface). Ferry and DPDK
alternate within each round.

  W5  guest <-> AF_XDP on ub-hv.
      Ferry `--port vhost:S,name=guest --port xdp:ub-hv,name=uplink`;
      DPDK testpmd `--vdev net_vhost0,iface=S --vdev net_af_xdp0,iface=ub-hv,start_queue=0,
      queue_count=1 --forward-mode=io`.
  W6  the same over AF_PACKET: Ferry `--port packet:ub-hv,name=uplink`; DPDK `--vdev
      net_af_packet0,iface=ub-hv`.
  Directions:
  tx  guest -> wire: testpmd virtio-user txonly (src GUEST_MAC, dst ub-lan's MAC); counted as
      ub-lan's rx_packets (veth counts what it hands to the LAN's stack, which then drops it:
      ub-lan has no address).
  rx  wire -> guest: tools/afpacket-send.c in the LAN namespace sends to GUEST_MAC from
      ub-lan's MAC (AF_PACKET, sendmmsg, qdisc bypass); the guest is testpmd virtio-user
      rxonly with a 4096-entry ring, counted at the guest (Rx-pps). Ferry gets a static
      forwarding entry for GUEST_MAC on the guest port first (`ferry ctl fdb add`), so the
      uplink steers the guest's frames to its socket before any frame of the guest's was seen.

    sudo tools/bench-uplink.py                                  # 3 rounds, W5 and W6, tx and rx
    sudo tools/bench-uplink.py --only W5 --directions tx --sizes 64,1518 --rounds 5
    sudo tools/bench-uplink.py --impls dpdk                     # the anchors alone
    sudo tools/bench-uplink.py --other /tmp/ferry-old           # and the build before a change, alternating

FERRY_BIN overrides the Ferry binary, FERRY_ARGS adds `ferry run` options, FERRY_UPLINK_OPTS
adds options to the uplink's port spec (e.g. `mode=native`); FERRY_TESTPMD_MEM=nohuge|huge|auto
testpmd's memory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (FERRIES, NOISY, OtherLoad, Tool, Unsupported, VethLink,  # noqa: E402
                      add_other_option, add_run_options, begin_run, build_tool,
                      cleanup_stale_netns, counter_rates, dpdk_vhost_port, ferry_binary_of, fmt, h,
                      in_netns, least_noisy, netns_cmd, noisy_note, parse_run_options,
                      print_other_table, print_round_table, ratio, run_rounds, summarize,
                      with_other)

BACKEND_CPU = 0
FRONTEND_CPU = 1
HV_IF, LAN_IF = "ub-hv", "ub-lan"
GUEST_MAC = "02:00:00:00:00:01"
HV_MAC = "02:00:00:00:00:02"
LAN_MAC = "02:00:00:00:00:03"
# tx frames go to a station behind the LAN, not to ub-lan itself: addressed to ub-lan, every
# frame would climb the LAN's IP layer in softirq on the back-end's CPU (the veth delivers on
# the sender's CPU) and that, not the back-end, would set the rate: 0.73 Mpps for both.
WIRE_STATION_MAC = "02:00:00:00:00:77"
WORKLOADS = {"W5": "AF_XDP", "W6": "AF_PACKET"}
DIRECTIONS = {"tx": "guest -> wire", "rx": "wire -> guest"}
IMPLS = ("ferry", "dpdk")
BAR, GOAL = 0.8, 1.0  # the Ferry/DPDK bar and goal, 64 B, every cell

# ---- The Ferry side, in one place: what `ferry run` gets and how the guest's MAC is steered.
FERRY_GUEST_PORT = "guest"
FERRY_UPLINK_PORT = "uplink"
FERRY_UPLINK_SPEC = {"W5": "xdp:{ifname},name=uplink", "W6": "packet:{ifname},name=uplink"}


def ferry_ports(workload: str, sock: str) -> list[str]:
    uplink = FERRY_UPLINK_SPEC[workload].format(ifname=HV_IF)
    if os.environ.get("FERRY_UPLINK_OPTS"):
        uplink += "," + os.environ["FERRY_UPLINK_OPTS"]
    return [f"vhost:{sock},name={FERRY_GUEST_PORT}", uplink]


def ferry_steer_cmd(control: str, binary: str | None = None) -> list[str]:
    return [binary or h.ferry_binary(), "ctl", "fdb", "add", GUEST_MAC, "--port", FERRY_GUEST_PORT,
            "--control", control]


# A Ferry without the uplink's port kind says "unknown port type 'xdp' (vhost, tap, ...)".
UNKNOWN_KIND = re.compile(r"unknown port (?:type|kind) '(\w+)'")

# ---- The DPDK anchor: testpmd io between net_vhost0 and one of these (DPDK 22.11 devargs).
DPDK_UPLINK_VDEV = {"W5": "net_af_xdp0,iface={ifname},start_queue=0,queue_count=1",
                    "W6": "net_af_packet0,iface={ifname}"}


# --------------------------------------------------------------------------- back-ends


def start_backend(impl: str, workload: str, lab: h.Lab, link: VethLink, sock: str,
                  binary: str | None = None):
    ns = link.ns["a"]
    if impl in FERRIES:
        ferry = lab.ferry(ferry_ports(workload, sock), start=False, cpu=BACKEND_CPU,
                          taskset=str(BACKEND_CPU),
                          extra_args=os.environ.get("FERRY_ARGS", "").split(), binary=binary)
        try:
            return in_netns(ferry, ns).start()
        except h.FerryError as exc:
            m = UNKNOWN_KIND.search(str(exc))
            if m:
                raise Unsupported(f"this Ferry has no {m.group(1)}: port (`ferry run --port "
                                  f"{ferry.ports[-1]}` says: {m.group(0)})") from None
            raise
    vdev = DPDK_UPLINK_VDEV[workload].format(ifname=HV_IF)
    be = lab.vhost_backend(sock, "io", cpu=BACKEND_CPU, extra_eal=["--vdev", vdev])
    return in_netns(be, ns).start(timeout=60)


def steer_guest(be, lab: h.Lab, binary: str | None = None):
    """Ferry only: pin GUEST_MAC to the guest port, as an operator would for a guest that
    has not sent anything yet (with the back-end's own binary's `ctl`)."""
    cmd = ferry_steer_cmd(be.control, binary)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    with open(lab._log("ferry-ctl"), "a") as f:
        f.write(f"$ {' '.join(cmd)}\n{res.stdout}{res.stderr}")
    if res.returncode != 0:
        raise h.HarnessError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")


def ferry_count(be, port: str, key: str):
    try:
        return be.port(port)[key]
    except Exception:
        return None


def ferry_sleeps(be):
    """Times Ferry's workers went to sleep so far (a poll() each; one that blocks is a wake-up
    the kernel pays for on the CPU that hands the frame over: in rx, the sender's)."""
    try:
        return sum(w["sleeps"] for w in be.stats()["workers"])
    except Exception:
        return None


def per_second(c0, c1, t0, t1):
    return (c1 - c0) / (t1 - t0) / 1e6 if c0 is not None and c1 is not None else None


# --------------------------------------------------------------------------- directions


def measure_tx(impl: str, workload: str, size: int, args, lab: h.Lab, link: VethLink,
               tools: dict) -> dict:
    sock = lab.path("g.sock")
    be = start_backend(impl, workload, lab, link, sock, ferry_binary_of(impl, args))
    h.wait_for_socket(sock, proc=be)
    fe = lab.virtio_user(sock, "txonly", cpu=FRONTEND_CPU, txpkts=size, mac=GUEST_MAC,
                         extra_app=[f"--eth-peer=0,{args.tx_dst}"]).start()
    load = OtherLoad([be.pid, fe.pid], backend=be.pid).start()
    time.sleep(args.warmup)
    keys = ("rx_packets", "rx_dropped")
    k0, t0 = link.stats("b", keys), time.monotonic()
    c0 = ferry_count(be, FERRY_UPLINK_PORT, "tx_packets") if impl in FERRIES else None
    samples = counter_rates(lambda: link.stat("b", "rx_packets"), args.duration)
    c1 = ferry_count(be, FERRY_UPLINK_PORT, "tx_packets") if impl in FERRIES else None
    k1, t1 = link.stats("b", keys), time.monotonic()
    other = load.stop()
    out = {"mpps": h.median(samples) / 1e6, "samples": samples, "other_cpus": other,
           "backend_cpus": load.backend_cpus,
           "lan_rx_dropped": k1["rx_dropped"] - k0["rx_dropped"],
           "frontend_tx_mpps": h.median(fe.pps_samples("tx", since=t0, until=t1) or [0]) / 1e6}
    if impl in FERRIES:
        out["backend_mpps"] = per_second(c0, c1, t0, t1)
        out["backend_ports"] = {p: ferry_count(be, p, "drops")
                                for p in (FERRY_GUEST_PORT, FERRY_UPLINK_PORT)}
    else:
        uplink = 1 - dpdk_vhost_port(be)
        tx = be.pps_samples("tx", since=t0, until=t1, port=uplink)
        out["backend_mpps"] = h.median(tx) / 1e6 if tx else None
    if out["mpps"] <= 0:
        raise h.HarnessError(f"nothing arrived at {LAN_IF}\n{lab.logs(15)}")
    return out


def measure_rx(impl: str, workload: str, size: int, args, lab: h.Lab, link: VethLink,
               tools: dict) -> dict:
    sock = lab.path("g.sock")
    be = start_backend(impl, workload, lab, link, sock, ferry_binary_of(impl, args))
    h.wait_for_socket(sock, proc=be)
    if impl in FERRIES:
        steer_guest(be, lab, ferry_binary_of(impl, args))
    # The guest's receive ring: while it shares CPU 1 with the sender it is descheduled for
    # milliseconds at a time, and a 256-entry ring fills in half of one (as in bench-switch W4rx).
    ring = args.rx_ring
    fe = lab.virtio_user(sock, "rxonly", cpu=FRONTEND_CPU, mac=GUEST_MAC, queue_size=ring,
                         extra_app=[f"--rxd={ring}"] if ring else []).start()
    long = str(args.warmup + args.duration + 30)
    sender = Tool(netns_cmd(link.ns["b"], ["taskset", "-c", str(args.sender_cpu),
                                           tools["afpacket-send"], LAN_IF, long, str(size),
                                           GUEST_MAC, LAN_MAC]),
                  lab._log("afpacket-send"), "afpacket-send")
    lab.procs.append(sender)
    sender.start()
    load = OtherLoad([be.pid, fe.pid, sender.pid], backend=be.pid).start()
    time.sleep(args.warmup)
    t0 = time.monotonic()
    hv0, lan0 = link.stats("a", ("rx_packets", "rx_dropped")), link.stats("b", ("tx_dropped",))
    c0 = ferry_count(be, FERRY_GUEST_PORT, "tx_packets") if impl in FERRIES else None
    s0 = ferry_sleeps(be) if impl in FERRIES else None
    samples = fe.measure("rx", warmup=0, duration=args.duration)["samples"]
    c1 = ferry_count(be, FERRY_GUEST_PORT, "tx_packets") if impl in FERRIES else None
    s1 = ferry_sleeps(be) if impl in FERRIES else None
    hv1, lan1 = link.stats("a", ("rx_packets", "rx_dropped")), link.stats("b", ("tx_dropped",))
    t1 = time.monotonic()
    sent = sender.values("tx", since=t0)
    other = load.stop()
    if not samples:
        raise h.HarnessError(f"no rate readings at the guest\n{lab.logs(15)}")
    out = {"mpps": h.median(samples) / 1e6, "samples": samples, "other_cpus": other,
           "backend_cpus": load.backend_cpus,
           "sender_mpps": h.median(sent) / 1e6 if sent else None,
           # what the kernel took in on ub-hv (XDP or stack), and what it dropped on the way
           "hv_rx_mpps": per_second(hv0["rx_packets"], hv1["rx_packets"], t0, t1),
           "hv_rx_dropped_mpps": per_second(hv0["rx_dropped"], hv1["rx_dropped"], t0, t1),
           "lan_tx_dropped_mpps": per_second(lan0["tx_dropped"], lan1["tx_dropped"], t0, t1)}
    if impl in FERRIES:
        out["backend_mpps"] = per_second(c0, c1, t0, t1)
        out["worker_sleeps_k"] = None if s0 is None or s1 is None else per_second(s0, s1, t0, t1) * 1e3
        out["backend_ports"] = {p: ferry_count(be, p, "drops")
                                for p in (FERRY_GUEST_PORT, FERRY_UPLINK_PORT)}
    else:
        tx = be.pps_samples("tx", since=t0, until=t1, port=dpdk_vhost_port(be))
        out["backend_mpps"] = h.median(tx) / 1e6 if tx else None
    if out["mpps"] <= 0:
        raise h.HarnessError(f"nothing arrived at the guest\n{lab.logs(15)}")
    return out


MEASURE = {"tx": measure_tx, "rx": measure_rx}


# --------------------------------------------------------------------------- driver


def notes(m: dict) -> list[str]:
    """The cross-checks of one measurement, for its progress line."""
    out = []
    if m.get("backend_mpps") is not None:
        out.append(f"back-end's count {m['backend_mpps']:.3f}")
    if m.get("worker_sleeps_k") is not None:
        out.append(f"worker slept {m['worker_sleeps_k']:.1f} k/s")
    if "frontend_tx_mpps" in m:
        out.append(f"guest tx {m['frontend_tx_mpps']:.3f}")
    if m.get("lan_rx_dropped"):
        out.append(f"{LAN_IF} rx_dropped {m['lan_rx_dropped']}")
    if "sender_mpps" in m:
        out.append(f"sender {fmt(m['sender_mpps'], 5).strip()}, {HV_IF} rx "
                   f"{fmt(m['hv_rx_mpps'], 5).strip()} dropped "
                   f"{fmt(m['hv_rx_dropped_mpps'], 5).strip()}, {LAN_IF} tx_dropped "
                   f"{fmt(m['lan_tx_dropped_mpps'], 5).strip()}")
    return out


def run_one(args, rnd: int, workload: str, direction: str, size: int, impl: str,
            tools: dict, unsupported: dict) -> dict:
    tag = f"round {rnd + 1} {workload}{direction} {size:>5} B {impl:5}"
    if (impl, workload) in unsupported:
        print(f"{tag}: NOT RUN: {unsupported[(impl, workload)]}", file=sys.stderr, flush=True)
        return {"error": unsupported[(impl, workload)]}

    def measure(lab: h.Lab) -> dict:
        # A fresh veth pair for every attempt: nothing a previous back-end left on the
        # interface (an XDP program, a socket) can carry over.
        link = VethLink(HV_IF, LAN_IF, HV_MAC, LAN_MAC, mtu=args.mtu, log_dir=lab.dir.path)
        lab.after_close.append(link.close)
        link.up()
        return MEASURE[direction](impl, workload, size, args, lab, link, tools)
    m = least_noisy(args, tag, measure, notes, lab_tag="bul")
    if m.get("unsupported"):
        unsupported[(impl, workload)] = m["error"]
    return m


def split_list(text: str, allowed, what: str, ap) -> list[str]:
    canon = {a.lower(): a for a in allowed}
    out = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        if item.lower() not in canon:
            ap.error(f"unknown {what} {item!r} (one of: {', '.join(allowed)})")
        out.append(canon[item.lower()])
    return list(dict.fromkeys(out))


def requirements(impls: list[str]) -> list[str]:
    problems = h.environment_problems(need_ferry="ferry" in impls, need_testpmd=True)
    if (os.cpu_count() or 1) < 2:
        problems.append("needs 2 CPUs (back-end on CPU 0, guest on CPU 1)")
    for tool in ("ip", "taskset", "sysctl"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ.get("PATH", "").split(":")):
            problems.append(f"`{tool}` not found")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="W5,W6", metavar="W,...", help="workloads: W5, W6")
    ap.add_argument("--directions", default="tx,rx",
                    help="tx (guest -> wire), rx (wire -> guest)")
    ap.add_argument("--impls", default="ferry,dpdk", help="back-ends to run: ferry, dpdk")
    add_other_option(ap)
    add_run_options(ap, sizes="64", sizes_help="frame sizes without FCS, e.g. 64,1518 (the "
                    "veth's MTU is raised to carry the largest untagged)")
    ap.add_argument("--sender-cpu", type=int, default=FRONTEND_CPU, metavar="CPU",
                    help=f"rx: the CPU of the LAN's sender (default {FRONTEND_CPU}, with the "
                         "guest; see docs/PERFORMANCE.md)")
    ap.add_argument("--rx-ring", type=int, default=4096, metavar="N",
                    help="rx: the guest's receive ring (virtio-user queue_size and --rxd); "
                         "0 keeps testpmd's default (256)")
    ap.add_argument("--tx-dst", default=WIRE_STATION_MAC, metavar="MAC",
                    help=f"tx: the guest's destination (default {WIRE_STATION_MAC}, a station "
                         f"behind the LAN, dropped before the LAN's IP layer; {LAN_MAC}, ub-lan's "
                         "own, makes the LAN's stack part of the measurement)")
    args = parse_run_options(ap)
    sizes = args.size_list
    if any(s < 60 for s in sizes):
        ap.error("--sizes: 60 bytes at least (an Ethernet frame without FCS)")
    args.mtu = max(1500, max(sizes) - 14)
    workloads = split_list(args.only, WORKLOADS, "workload", ap)
    directions = split_list(args.directions, DIRECTIONS, "direction", ap)
    impls = with_other(split_list(args.impls, IMPLS, "back-end", ap), args)
    cells = [(w, d) for w in workloads for d in directions]

    unsupported: dict = {}  # (impl, workload) -> why it cannot run
    problems = requirements(impls)
    tools = {}
    if not problems and "rx" in directions:
        try:
            tools["afpacket-send"] = build_tool("afpacket-send")
        except h.HarnessError as exc:
            problems.append(str(exc))
    if problems:
        print("bench-uplink: cannot run:\n  " + "\n  ".join(problems), file=sys.stderr)
        if "ferry" in impls:
            print("  (--impls dpdk runs the anchor rows alone)", file=sys.stderr)
        return 2

    cleanup_stale_netns()
    begin_run(f"# testpmd memory: {h.memory_mode()}; back-end CPU {BACKEND_CPU}, guest CPU "
              f"{FRONTEND_CPU}, rx sender CPU {args.sender_cpu}; veth MTU {args.mtu}; "
              f"{args.rounds} round(s), warm-up {args.warmup:g} s, {args.duration:g} s per "
              "measurement")

    # (workload, direction, size, impl) -> [measurement per round]
    results, failed = run_rounds(
        args.rounds, [(w, d, s) for w, d in cells for s in sizes], lambda cell: impls,
        lambda rnd, w, d, s, impl: run_one(args, rnd, w, d, s, impl, tools, unsupported))
    print()
    print(f"{'workload':28} {'size':>5}  {'Ferry best':>10} {'Ferry med':>9}  "
          f"{'DPDK best':>9} {'DPDK med':>9}  {'Ferry/DPDK':>10} {'(median)':>8}")
    summary = []
    for workload, direction in cells:
        for size in sizes:
            row = summarize({"workload": f"{workload}{direction}", "size": size},
                            {impl: results.get((workload, direction, size, impl), [])
                             for impl in IMPLS + ("other",)})
            row["ratio"] = ratio(row["ferry_best"], row["dpdk_best"])
            row["ratio_median"] = ratio(row["ferry_median"], row["dpdk_median"])
            summary.append(row)
            label = f"{workload}{direction} {DIRECTIONS[direction]} {WORKLOADS[workload]}"
            print(f"{label:28} {size:>5}  {fmt(row['ferry_best'], 10)} "
                  f"{fmt(row['ferry_median'])}  {fmt(row['dpdk_best'])} "
                  f"{fmt(row['dpdk_median'])}  {fmt(row['ratio'], 10)} "
                  f"{fmt(row['ratio_median'], 8)}{noisy_note(row)}")
    print("(Mpps: best and median over rounds of each measurement's median per-second reading; "
          f"tx at {LAN_IF}'s rx_packets, rx at the guest; "
          f"'noisy' = other processes used > {NOISY:.2f} CPU during a measurement)")
    for row in summary:
        if row["size"] == 64:
            print(f"# {row['workload']} 64 B: Ferry/DPDK {fmt(row['ratio'], 4).strip()} "
                  f"(bar >= {BAR}, goal >= {GOAL})")
    if "dpdk" in impls:
        # Round by round: a noisy round still compares the back-ends measured in it.
        print_round_table({(f"{w}{d}", s, i): ms for (w, d, s, i), ms in results.items()},
                          [(f"{w}{d}", s) for w, d in cells for s in sizes],
                          lambda cell: f"{cell[0]} {DIRECTIONS[cell[0][2:]]} {WORKLOADS[cell[0][:2]]}",
                          width=28)
    if args.other:
        print_other_table(summary, lambda row: f"{row['workload']} "
                          f"{DIRECTIONS[row['workload'][2:]]} {WORKLOADS[row['workload'][:2]]}",
                          args.other, 28)
    for (impl, workload), why in sorted(unsupported.items()):
        print(f"# NOT RUN: {impl} {workload}: {why}", file=sys.stderr)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary,
                       "not_run": {f"{i} {w}": why for (i, w), why in unsupported.items()},
                       "ferry_ports": {w: ferry_ports(w, "SOCK") for w in workloads},
                       "measurements": [{"workload": f"{w}{d}", "size": s, "impl": i,
                                         "rounds": ms}
                                        for (w, d, s, i), ms in results.items()]}, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
