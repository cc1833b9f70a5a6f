#!/usr/bin/env python3
"""A station reaching a remote host over VXLAN: Ferry's vxlan port (kernel UDP socket path, and
the AF_XDP path through an `xdp:` uplink) against a Linux bridge with a kernel `vxlan` device,
in the same run, alternating rounds.

Topology (namespaces; addresses in 198.18.0.0/15, MTU 1600 on the underlay):

    g (station) ─ [host A] ─ underlay veth ─ r (router) ─ underlay veth ─ [host B] ─ c (remote)

Host B is always a Linux bridge with a `vxlan` device (VNI 100, UDP 4789) and a veth to c.
Host A is the row:

  kernel   a Linux bridge with a `vxlan` device and a veth to g
  ferry    Ferry with a `tap:` port (its TAP moved into g) and `vxlan:100,local=...,remote=...`,
           pinned to CPU 0 (`--cpu 0`, `taskset -c 0`)
  ferry-xdp  the same, and host A's underlay veth u0 as `xdp:u0,name=up,vlan=4094` with the
           vxlan port's `via=up`: Ferry builds the outer headers and sends on the AF_XDP socket
           (native XDP on the veth, copy mode: veth has no zero-copy); datagrams from B still
           arrive through the kernel's UDP socket

Where each side runs (2 CPUs): CPU 0 is host A's VTEP and nothing else; CPU 1 the station,
the far side (router, host B, c) and the iperf3 server. Ferry is pinned to CPU 0; the kernel
VTEP's bridge and vxlan work runs where host A's bridge port from g receives, steered to CPU 0
by RPS (a veth hands a frame to the peer's backlog on the sending CPU otherwise, which would put
the kernel VTEP on the station's CPU); the router's port from A hands the far side to CPU 1 by
RPS in every row (otherwise a veth runs the far side's receive in the sender's softirq, on the
VTEP's CPU), and host A's underlay port hands what comes back to CPU 0. iperf3 (client and
server) is pinned to CPU 1. So both rows give host A's VTEP one CPU of its own and the same
station, far side and CPU for them; what remains different: the station's link is a veth in
the kernel row and Ferry's TAP in the Ferry rows, and on the AF_XDP row the XDP program on u0
runs in the sender's NAPI context (CPU 1) for what comes back.

Measured from g to c with iperf3 (client in g, server in c):
  64 B   UDP, 18-byte payload (64-byte frames on the wire), unlimited rate, 1 stream: the
         packets per second the server received; each round also prints what the station
         sent, what host A's VTEP put into the tunnel (Ferry's vxlan port tx, the kernel's
         vxlan device tx) and how busy CPU 0 was (the VTEP, and whatever else the shared
         machine ran there)
  TCP    1 stream, Gbit/s the server received

    sudo tools/bench-vxlan.py                    # 2 rounds of 5 s per measurement
    sudo tools/bench-vxlan.py --rounds 3 --seconds 8
    sudo tools/bench-vxlan.py --baseline /tmp/ferry-old   # adds a row: another Ferry binary, same run
    sudo tools/bench-vxlan.py --idle poll   # Ferry's worker never sleeps (it has CPU 0 to itself)
    sudo tools/bench-vxlan.py --capacity    # the VTEP's own forwarding rate (below)

--capacity measures what each VTEP forwards when neither the station nor the far side holds it
back: the station is tools/afpacket-send (64-byte frames to C's MAC as fast as CPU 1 sends, no
socket stack), and the router stops forwarding (host A's datagrams end in its routing lookup,
on CPU 1), so CPU 1 does little else and host A's VTEP on CPU 0 is the bottleneck. Each
round prints what the station sent and what the VTEP put into the tunnel; nothing reaches C.

FERRY_BIN overrides the Ferry binary. On a shared 2-core machine the sender and the path share
the CPUs: the figures are indicative, compare them within one run only, and report the load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "Integration"))
sys.path.insert(0, str(REPO / "tools"))
import harness as h  # noqa: E402
from benchlib import build_tool  # noqa: E402

PID = os.getpid() % 10000
ROWS = ["kernel", "ferry", "ferry-xdp"]
A_UNDERLAY, B_UNDERLAY = "198.18.1.1", "198.18.2.1"
G_IP, C_IP = "198.18.100.1", "198.18.100.2"
MTU = "1600"


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip()}")
    return res


def ns(space: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return run("ip", "netns", "exec", space, *cmd, check=check)


def middle(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


class Setup:
    def __init__(self, row: str, workdir: str, binary: str | None = None, idle: str | None = None):
        self.row = row
        self.ferry = None
        self.spaces = {k: f"fbv-{k}-{PID}" for k in ("g", "a", "r", "b", "c")}
        s = self.spaces
        for space in s.values():
            run("ip", "netns", "del", space, check=False)
            run("ip", "netns", "add", space)
            ns(space, "ip", "link", "set", "lo", "up")
        try:
            ns(s["r"], "sysctl", "-qw", "net.ipv4.ip_forward=1")
            for host, address, side in ((s["a"], A_UNDERLAY, "a"), (s["b"], B_UNDERLAY, "b")):
                gateway = address.rsplit(".", 1)[0] + ".254"
                run("ip", "link", "add", "u0", "netns", host, "mtu", MTU, "type", "veth", "peer", "name",
                    f"r{side}", "netns", s["r"], "mtu", MTU)
                ns(host, "ip", "addr", "add", f"{address}/24", "dev", "u0")
                ns(host, "ip", "link", "set", "u0", "up")
                ns(host, "ip", "route", "add", "default", "via", gateway)
                ns(s["r"], "ip", "addr", "add", f"{gateway}/24", "dev", f"r{side}")
                ns(s["r"], "ip", "link", "set", f"r{side}", "up")
            self.linux_vtep(s["b"], B_UNDERLAY, A_UNDERLAY, s["c"])
            # A veth passes partial checksums on as they are: the Linux VTEP's inner TCP
            # checksums would reach host A unfinished, where no NIC ever leaves them (a
            # socket-fed port, as Ferry's, hands them on as the wire had them). Both rows alike.
            for host in (s["a"], s["b"]):
                ns(host, "ethtool", "-K", "u0", "tx", "off")
            # The far side on CPU 1, what comes back to host A on CPU 0 (the module's text).
            self.steer(s["r"], "ra", cpu=1)
            self.steer(s["a"], "u0", cpu=0)
            if row == "kernel":
                self.linux_vtep(s["a"], A_UNDERLAY, B_UNDERLAY, s["g"])
                self.steer(s["a"], "sp", cpu=0)
            else:
                tap = f"fbvt{PID}"
                ports = [f"tap:{tap},name=g", f"vxlan:100,local={A_UNDERLAY},remote={B_UNDERLAY},name=vx"]
                if row == "ferry-xdp":
                    ports = [ports[0], "xdp:u0,name=up,vlan=4094", ports[1] + ",via=up"]
                self.ferry = h.Ferry(ports,
                                     control=os.path.join(workdir, "ctl.sock"),
                                     log_path=os.path.join(workdir, "ferry.log"), cpu=0, taskset="0",
                                     netns=s["a"], binary=binary,
                                     extra_args=["--idle", idle] if idle else []).start()
                h.wait_until(lambda: ns(s["a"], "ip", "link", "show", tap, check=False).returncode == 0, 10, "the TAP")
                if row == "ferry-xdp":
                    h.wait_until(self.resolved, 15, "the next hop to host B resolved")
                # Moved, not renamed: Ferry follows its TAP (MTU, offloads) by name.
                ns(s["a"], "ip", "link", "set", tap, "netns", s["g"])
            station = f"fbvt{PID}" if row != "kernel" else "s0"
            for space, address, device in ((s["g"], G_IP, station), (s["c"], C_IP, "s0")):
                ns(space, "ip", "addr", "add", f"{address}/24", "dev", device)
                ns(space, "ip", "link", "set", device, "up")
            ns(s["g"], "busybox", "ping", "-c", "3", "-W", "2", C_IP, check=False)
        except BaseException:
            self.teardown()
            raise

    @staticmethod
    def steer(space: str, link: str, cpu: int):
        """Receive Packet Steering: frames `link` receives are processed on `cpu`."""
        # `ip netns exec` mounts the namespace's own sysfs.
        ns(space, "sh", "-c", f"echo {1 << cpu:x} > /sys/class/net/{link}/queues/rx-0/rps_cpus")

    def tunnel_packets(self) -> int:
        """What host A's VTEP has put into the tunnel: Ferry's vxlan port's tx, or the vxlan device's."""
        if self.ferry is not None:
            return self.ferry.port("vx")["tx_packets"]
        link = json.loads(ns(self.spaces["a"], "ip", "-s", "-j", "link", "show", "vx100").stdout)
        return link[0]["stats64"]["tx"]["packets"]

    def resolved(self) -> bool:
        """Whether the vxlan port has the outer headers for host B (`via=`)."""
        try:
            return "1 resolved" in self.ferry.port("vx")["state"]
        except h.HarnessError:
            return False

    @staticmethod
    def linux_vtep(host: str, local: str, remote: str, station: str):
        ns(host, "ip", "link", "add", "vx100", "type", "vxlan", "id", "100", "local", local, "remote", remote,
           "dstport", "4789")
        ns(host, "ip", "link", "add", "br0", "type", "bridge")
        ns(host, "ip", "link", "set", "vx100", "master", "br0")
        run("ip", "link", "add", "sp", "netns", host, "type", "veth", "peer", "name", "s0", "netns", station)
        ns(host, "ip", "link", "set", "sp", "master", "br0")
        for link in ("vx100", "br0", "sp"):
            ns(host, "ip", "link", "set", link, "up")

    def iperf(self, seconds: int, udp: bool) -> dict:
        s = self.spaces
        server = subprocess.Popen(["ip", "netns", "exec", s["c"], "taskset", "-c", "1", "iperf3", "-s", "-1",
                                   "-B", C_IP],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            h.wait_until(lambda: "5201" in ns(s["c"], "ss", "-ltn", check=False).stdout
                         or "5201" in ns(s["c"], "ss", "-lun", check=False).stdout, 10, "iperf3 server")
            cmd = ["taskset", "-c", "1", "iperf3", "-c", C_IP, "-t", str(seconds), "--json"]
            if udp:
                cmd += ["-u", "-l", "18", "-b", "0"]
            res = ns(s["g"], *cmd, check=False)
            return json.loads(res.stdout)
        finally:
            server.wait(timeout=seconds + 20)

    def teardown(self):
        if self.ferry is not None:
            self.ferry.stop()
        for space in self.spaces.values():
            run("ip", "netns", "del", space, check=False)


def cpu0_times() -> tuple[int, int]:
    """CPU 0's busy and total jiffies so far (/proc/stat; idle and iowait are not busy)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu0 "):
                values = [int(v) for v in line.split()[1:]]
                return sum(values) - values[3] - values[4], sum(values)
    raise RuntimeError("no cpu0 line in /proc/stat")


def measure(row: str, seconds: int, workdir: str, binary: str | None,
            idle: str | None) -> tuple[float, float, float]:
    """(packets per second C received, what the VTEP put into the tunnel per second, TCP Gbit/s)."""
    setup = Setup(row, workdir, binary, idle)
    try:
        tunneled = setup.tunnel_packets()
        busy, total = cpu0_times()
        udp = setup.iperf(seconds, udp=True)["end"]["sum"]
        busy_after, total_after = cpu0_times()
        tunneled = setup.tunnel_packets() - tunneled
        received = udp["packets"] - udp["lost_packets"]
        pps = received / udp["seconds"]
        forwarded = tunneled / udp["seconds"]
        # Where the 64 B packets went: what the station sent, what host A's VTEP put into the
        # tunnel, what C took; and how busy the VTEP's CPU was meanwhile.
        print(f"         {row}: station sent {udp['packets'] / udp['seconds'] / 1e3:.1f} kpps, VTEP into the "
              f"tunnel {forwarded / 1e3:.1f}, C received {pps / 1e3:.1f}; CPU 0 busy "
              f"{100 * (busy_after - busy) / max(1, total_after - total):.0f} %", flush=True)
        tcp = setup.iperf(seconds, udp=False)["end"]["sum_received"]["bits_per_second"] / 1e9
        return pps, forwarded, tcp
    finally:
        setup.teardown()


def measure_capacity(row: str, seconds: int, workdir: str, binary: str | None, idle: str | None,
                     sender: str) -> float:
    """What host A's VTEP put into the tunnel per second with a raw-socket station and a far side
    that drops at the router's door."""
    setup = Setup(row, workdir, binary, idle)
    try:
        s = setup.spaces
        # The router stops forwarding: what host A sends ends in its routing lookup, on CPU 1.
        ns(s["r"], "sysctl", "-qw", "net.ipv4.ip_forward=0")
        station = f"fbvt{PID}" if row != "kernel" else "s0"
        c_mac = json.loads(ns(s["c"], "ip", "-j", "link", "show", "s0").stdout)[0]["address"]
        tunneled = setup.tunnel_packets()
        busy, total = cpu0_times()
        out = ns(s["g"], "taskset", "-c", "1", sender, station, str(seconds), "64", c_mac).stdout
        busy_after, total_after = cpu0_times()
        forwarded = (setup.tunnel_packets() - tunneled) / seconds
        sent = int(re.search(r"TOTAL tx=(\d+)", out).group(1)) / seconds
        print(f"         {row}: station sent {sent / 1e3:.1f} kpps, VTEP into the tunnel {forwarded / 1e3:.1f}; "
              f"CPU 0 busy {100 * (busy_after - busy) / max(1, total_after - total):.0f} %", flush=True)
        return forwarded
    finally:
        setup.teardown()


def capacity(args, rows: list[str], binaries: dict):
    sender = build_tool("afpacket-send")
    results: dict[str, list[float]] = {row: [] for row in rows}
    print(f"load: {open('/proc/loadavg').read().split()[:3]}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ferry-bench-vxlan-") as workdir:
        for r in range(args.rounds):
            for row in (rows if r % 2 == 0 else list(reversed(rows))):
                forwarded = measure_capacity(row, args.seconds, workdir, binaries.get(row), args.idle, sender)
                results[row].append(forwarded)
                print(f"round {r + 1} {row:9} VTEP {forwarded / 1e3:8.1f} kpps", flush=True)
    print(f"\nload: {open('/proc/loadavg').read().split()[:3]}")
    print(f"{'path':9} {'VTEP kpps, 64 B':>16}   (median of {args.rounds})")
    medians = {row: middle(v) for row, v in results.items()}
    for row, forwarded in medians.items():
        print(f"{row:9} {forwarded / 1e3:16.1f}")
    for row in rows[1:]:
        print(f"{row}/kernel  VTEP {medians[row] / medians['kernel']:.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--baseline", metavar="FERRY", help="another Ferry binary measured as row 'baseline'")
    parser.add_argument("--idle", metavar="POLICY", help="`ferry run --idle POLICY` for every Ferry row")
    parser.add_argument("--capacity", action="store_true",
                        help="the VTEP's own 64 B forwarding rate: a raw-socket station, a far side that drops")
    args = parser.parse_args()
    rows = ROWS + (["baseline"] if args.baseline else [])
    binaries = {"baseline": args.baseline}
    if os.geteuid() != 0:
        sys.exit("bench-vxlan: needs root (namespaces, veths, raw sockets)")
    if args.capacity:
        capacity(args, rows, binaries)
        return
    results: dict[str, list[tuple[float, float, float]]] = {row: [] for row in rows}
    print(f"load: {open('/proc/loadavg').read().split()[:3]}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ferry-bench-vxlan-") as workdir:
        for r in range(args.rounds):
            for row in (rows if r % 2 == 0 else list(reversed(rows))):
                pps, forwarded, gbps = measure(row, args.seconds, workdir, binaries.get(row), args.idle)
                results[row].append((pps, forwarded, gbps))
                print(f"round {r + 1} {row:8} 64B {pps / 1e3:8.1f} kpps   TCP {gbps:6.2f} Gbit/s", flush=True)
    print(f"\nload: {open('/proc/loadavg').read().split()[:3]}")
    print(f"{'path':9} {'64B kpps at C':>14} {'VTEP kpps':>10} {'TCP Gbit/s':>11}   (median of {args.rounds})")
    medians = {row: tuple(middle([m[i] for m in v]) for i in range(3)) for row, v in results.items()}
    for row, (pps, forwarded, gbps) in medians.items():
        print(f"{row:9} {pps / 1e3:14.1f} {forwarded / 1e3:10.1f} {gbps:11.2f}")
    k = medians["kernel"]
    for row in rows[1:]:
        f = medians[row]
        print(f"{row}/kernel  64B at C {f[0] / k[0]:.2f}x   VTEP {f[1] / k[1]:.2f}x   TCP {f[2] / k[2]:.2f}x")


if __name__ == "__main__":
    main()
