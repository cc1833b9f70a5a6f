#!/usr/bin/env python3
"""TCP between two network namespaces: a Linux bridge against Ferry, iperf3, one table.

Rows (alternating within each round, each with 1 and with 4 streams, 8 s by default):

  bridge       a Linux bridge (in a namespace of its own) and two veth pairs
  ferry-tap    Ferry with two `tap:` ports, each TAP moved into one namespace; TSO on the
               TAPs (Ferry's default), so 64 KiB super-frames cross Ferry whole
  ferry-packet Ferry with two `packet:` ports on veths whose peers are in the namespaces, the
               veths' offloads as they come (TSO, checksum offload on): frames carry their
               virtio-net header (PACKET_VNET_HDR), so 64 KiB super-frames cross Ferry whole
  ferry-packet-off  ferry-packet with `offloads=off` on both ports: the kernel still hands
               Ferry super-frames; Ferry segments them and finishes every checksum
  ferry-nooff  ferry-tap with the TAPs' offloads turned off in the namespaces (ethtool -K tx off
               tso off gso off): every segment an MTU-sized frame with its checksum computed,
               what Ferry did before offloads

Columns: Gbit/s (iperf3's receiver), and Ferry's CPU seconds (all its threads, from
/proc/PID/stat) per GByte carried. Ferry runs with `--cpu 0` under `taskset -c 0`; iperf3 is
not pinned. Addresses in 198.18.0.0/15.

    sudo tools/bench-tcp.py                      # 1 round, every row
    sudo tools/bench-tcp.py --rounds 3 --seconds 8 --only bridge,ferry-tap

FERRY_BIN overrides the Ferry binary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "Integration"))
import harness as h  # noqa: E402

ROWS = ["bridge", "ferry-tap", "ferry-packet", "ferry-packet-off", "ferry-nooff"]
PID = os.getpid() % 10000
SPACES = [f"fbt-a-{PID}", f"fbt-b-{PID}"]
ADDRESSES = ["198.18.9.1", "198.18.9.2"]


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True)


def ns(space: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return run("ip", "netns", "exec", space, *cmd, check=check)


def jiffies(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class Setup:
    """One row's wiring: namespaces with addresses, and Ferry if the row has one."""

    def __init__(self, row: str, workdir: str):
        self.row = row
        self.ferry = None
        self.extra = []
        for space in SPACES:
            run("ip", "netns", "del", space, check=False)
            run("ip", "netns", "add", space)
            ns(space, "ip", "link", "set", "lo", "up")
        if row == "bridge":
            self.extra = [f"fbt-br-{PID}"]
            run("ip", "netns", "del", self.extra[0], check=False)
            run("ip", "netns", "add", self.extra[0])
            ns(self.extra[0], "ip", "link", "add", "br0", "type", "bridge")
            ns(self.extra[0], "ip", "link", "set", "br0", "up")
            for i, space in enumerate(SPACES):
                ns(self.extra[0], "ip", "link", "add", f"p{i}", "type", "veth", "peer", "name", "wire",
                   "netns", space)
                ns(self.extra[0], "ip", "link", "set", f"p{i}", "master", "br0")
                ns(self.extra[0], "ip", "link", "set", f"p{i}", "up")
            devices = ["wire", "wire"]
        elif row.startswith("ferry-packet"):
            self.veths = [f"fbtp{PID}a", f"fbtp{PID}b"]
            for veth, space in zip(self.veths, SPACES):
                run("ip", "link", "del", veth, check=False)
                run("ip", "link", "add", veth, "type", "veth", "peer", "name", "wire", "netns", space)
                run("ip", "link", "set", veth, "up")
            devices = ["wire", "wire"]
            offloads = "off" if row == "ferry-packet-off" else "on"
            self.start_ferry([f"packet:{v},name={n},offloads={offloads}" for v, n in zip(self.veths, "ab")], workdir)
        else:
            taps = [f"fbt{PID}a", f"fbt{PID}b"]
            self.start_ferry([f"tap:{t},name={n}" for t, n in zip(taps, "ab")], workdir)
            h.wait_until(lambda: self.ferry.log_text().count("offloads 0x") >= 2, 10, "TAP offloads applied")
            for tap, space in zip(taps, SPACES):
                run("ip", "link", "set", tap, "netns", space)
                if row == "ferry-nooff":
                    ns(space, "ethtool", "-K", tap, "tx", "off", "tso", "off", "gso", "off")
            devices = taps
        for device, space, address in zip(devices, SPACES, ADDRESSES):
            ns(space, "ip", "addr", "add", f"{address}/24", "dev", device)
            ns(space, "ip", "link", "set", device, "up")

    def start_ferry(self, ports: list[str], workdir: str):
        self.ferry = h.Ferry(ports, control=os.path.join(workdir, "ctl.sock"),
                             log_path=os.path.join(workdir, f"ferry-{self.row}.log"), cpu=0, taskset="0").start()

    def teardown(self):
        if self.ferry is not None:
            self.ferry.stop()
        for veth in getattr(self, "veths", []):
            run("ip", "link", "del", veth, check=False)
        for space in SPACES + self.extra:
            run("ip", "netns", "del", space, check=False)


def measure(setup: Setup, streams: int, seconds: int) -> tuple[float, float | None]:
    server = subprocess.Popen(["ip", "netns", "exec", SPACES[1], "iperf3", "-s", "-1", "-B", ADDRESSES[1]],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        before = jiffies(setup.ferry.pid) if setup.ferry else 0
        out = ns(SPACES[0], "iperf3", "-c", ADDRESSES[1], "-P", str(streams), "-t", str(seconds), "-J").stdout
        after = jiffies(setup.ferry.pid) if setup.ferry else 0
    finally:
        server.wait(timeout=30)
    result = json.loads(out)["end"]["sum_received"]
    gbits = result["bits_per_second"] / 1e9
    cpu = None
    if setup.ferry:
        cpu = (after - before) / os.sysconf("SC_CLK_TCK") / (result["bytes"] / 1e9)
    return gbits, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--only", default=",".join(ROWS))
    args = parser.parse_args()
    rows = [r for r in args.only.split(",") if r]
    unknown = set(rows) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; rows are {ROWS}")
    if os.geteuid() != 0:
        sys.exit("bench-tcp: run as root (namespaces, TAPs)")
    for tool in ("iperf3", "ethtool"):
        if not any(os.access(os.path.join(d, tool), os.X_OK) for d in os.environ["PATH"].split(":") + ["/usr/sbin"]):
            sys.exit(f"bench-tcp: {tool} missing (tools/install-deps.sh installs it)")
    results: dict[tuple[str, int], list[tuple[float, float | None]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-tcp-") as workdir:
        for r in range(args.rounds):
            for row in rows:
                setup = Setup(row, workdir)
                try:
                    for streams in (1, 4):
                        value = measure(setup, streams, args.seconds)
                        results.setdefault((row, streams), []).append(value)
                        cpu = f"{value[1]:.2f} CPU s/GB" if value[1] is not None else ""
                        print(f"round {r + 1} {row:16s} P={streams}: {value[0]:6.2f} Gbit/s {cpu}", flush=True)
                finally:
                    setup.teardown()
    print()
    print(f"| row | streams | Gbit/s (median of {args.rounds}) | × bridge | Ferry CPU s/GByte |")
    print("|---|---|---|---|---|")
    for streams in (1, 4):
        base = results.get(("bridge", streams))
        base_median = sorted(v[0] for v in base)[len(base) // 2] if base else None
        for row in rows:
            values = results[(row, streams)]
            gbits = sorted(v[0] for v in values)[len(values) // 2]
            cpus = sorted(v[1] for v in values if v[1] is not None)
            cpu = f"{cpus[len(cpus) // 2]:.2f}" if cpus else "—"
            ratio = f"{gbits / base_median:.2f}" if base_median else "—"
            print(f"| {row} | {streams} | {gbits:.2f} | {ratio} | {cpu} |")


if __name__ == "__main__":
    try:
        main()
    finally:
        h.cleanup_all()
