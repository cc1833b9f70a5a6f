#!/usr/bin/env python3
"""TCP through Ferry with iperf3: between two network namespaces (a Linux bridge against
Ferry) and between a QEMU guest and the host (QEMU's own TAP against Ferry), one table each.

Rows (alternating within each round, each with 1 and with 4 streams, 8 s by default):

  bridge       a Linux bridge (in a namespace of its own) and two veth pairs
  ferry-tap    Ferry with two `tap:` ports, each TAP moved into one namespace; TSO on the
               TAPs (Ferry's default), so 64 KiB super-frames cross Ferry whole
  ferry-packet Ferry with two `packet:` ports on veths whose peers are in the namespaces, the
               veths' offloads as they come (TSO, checksum offload on): frames carry their
               virtio-net header (PACKET_VNET_HDR), so 64 KiB super-frames cross Ferry whole
  ferry-packet-off  ferry-packet with `offloads=off` on both ports: the kernel still hands
               Ferry super-frames; Ferry segments them and finishes every checksum
  ferry-xdp    Ferry with a `tap:` port (its TAP in the sending namespace, TSO on) and an
               `xdp:` uplink on a veth whose peer is in the receiving one: AF_XDP takes no GSO,
               so Ferry cuts every 64 KiB super-frame straight into UMEM frames, every checksum
               computed (the veth with an XDP program takes no TSO on the way back either)
  ferry-nooff  ferry-tap with the TAPs' offloads turned off in the namespaces (ethtool -K tx off
               tso off gso off): every segment an MTU-sized frame with its checksum computed,
               what Ferry did before offloads

Columns: Gbit/s (iperf3's receiver), and Ferry's CPU seconds (all its threads, from
/proc/PID/stat) per GByte carried. Ferry runs with `--cpu 0` under `taskset -c 0`; iperf3 is
not pinned. Addresses in 198.18.0.0/15.

And a QEMU test guest (tools/run-test-guest.sh: TCG, one vCPU, QEMU under `taskset -c 1`)
against the host, iperf3's server in the guest and its client in a namespace, host -> guest
and guest -> host (-R), the same guest both ways:

  guest-ferry    the guest on a Ferry vhost-user port, Ferry's `tap:` port's TAP in the
                 namespace (Ferry pinned as above)
  guest-ferry-notso  guest-ferry with `guest_tso4=off,guest_tso6=off` on the guest's
                 virtio-net-pci: host -> guest super-frames from the TAP are cut by Ferry
                 straight into the guest's receive chains
  guest-qemutap  the guest on QEMU's own `-netdev tap`, its TAP in the namespace; vhost=off:
                 this machine has no /dev/vhost-net (no vhost_net module in its kernel), so
                 QEMU's own thread moves the frames

Their table adds QEMU's CPU seconds per GByte. Under TCG the guest's emulated CPU is slow, so
these rows compare the two back-ends' cost more than they show what a KVM guest would reach
(/dev/kvm here is kvm_pvm, which stock kernels do not boot under).

    sudo tools/bench-tcp.py                      # 1 round, every row
    sudo tools/bench-tcp.py --rounds 3 --seconds 8 --only bridge,ferry-tap
    sudo tools/bench-tcp.py --only guest-ferry,guest-qemutap

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
import qemu_guest as qg  # noqa: E402

NAMESPACE_ROWS = ["bridge", "ferry-tap", "ferry-packet", "ferry-packet-off", "ferry-xdp", "ferry-nooff"]
GUEST_ROWS = ["guest-ferry", "guest-ferry-notso", "guest-qemutap"]
ROWS = NAMESPACE_ROWS + GUEST_ROWS
PID = os.getpid() % 10000
SPACES = [f"fbt-a-{PID}", f"fbt-b-{PID}"]
ADDRESSES = ["198.18.9.1", "198.18.9.2"]
GUEST_IPERF_PORT = 5201
GUEST_MAC = "52:54:00:18:09:02"
GUEST_CPU = "1"   # QEMU's; Ferry has CPU 0
DIRECTIONS = ("host -> guest", "guest -> host")


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True)


def ns(space: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return run("ip", "netns", "exec", space, *cmd, check=check)


def middle(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def jiffies(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def move_into(tap: str, space: str):
    """Moves a TAP into a namespace. The previous row's TAP of the same name may still be on its
    way out of it (a closed TAP goes asynchronously; on a loaded machine that took a while), and
    until it is gone the move fails: try again for a few seconds."""
    h.wait_until(lambda: run("ip", "link", "set", tap, "netns", space, check=False).returncode == 0, 10,
                 f"{tap} moved into {space}")


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
        elif row == "ferry-xdp":
            tap = f"fbt{PID}a"
            self.veths = [f"fbtx{PID}"]
            run("ip", "link", "del", self.veths[0], check=False)
            # One queue each way, as the xdp port binds one socket per channel veth reports (one).
            run("ip", "link", "add", self.veths[0], "numtxqueues", "1", "numrxqueues", "1", "type", "veth",
                "peer", "name", "wire", "numtxqueues", "1", "numrxqueues", "1", "netns", SPACES[1])
            run("ip", "link", "set", self.veths[0], "up")
            # AF_XDP carries no checksum state: the receiver's ACKs must leave with full checksums.
            ns(SPACES[1], "ethtool", "-K", "wire", "tx", "off")
            self.start_ferry([f"tap:{tap},name=a", f"xdp:{self.veths[0]},name=b"], workdir)
            h.wait_until(lambda: "offloads 0x" in self.ferry.log_text(), 10, "TAP offloads applied")
            move_into(tap, SPACES[0])
            devices = [tap, "wire"]
        else:
            taps = [f"fbt{PID}a", f"fbt{PID}b"]
            self.start_ferry([f"tap:{t},name={n}" for t, n in zip(taps, "ab")], workdir)
            h.wait_until(lambda: self.ferry.log_text().count("offloads 0x") >= 2, 10, "TAP offloads applied")
            for tap, space in zip(taps, SPACES):
                move_into(tap, space)
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


class GuestSetup:
    """One guest row's wiring: the test guest with an iperf3 server, its back-end (Ferry's vhost
    port + tap port, or QEMU's own tap) and the TAP in namespace SPACES[0]."""

    def __init__(self, row: str, workdir: str):
        self.row = row
        self.ferry = None
        self.guest = None
        run("ip", "netns", "del", SPACES[0], check=False)
        run("ip", "netns", "add", SPACES[0])
        ns(SPACES[0], "ip", "link", "set", "lo", "up")
        tap = f"fbtg{PID}"
        try:
            if row.startswith("guest-ferry"):
                sock = os.path.join(workdir, "guest.sock")
                self.ferry = h.Ferry([f"vhost:{sock},name=g", f"tap:{tap},name=h"],
                                     control=os.path.join(workdir, "ctl.sock"),
                                     log_path=os.path.join(workdir, f"ferry-{row}.log"), cpu=0,
                                     taskset="0").start()
                h.wait_for_socket(sock, proc=self.ferry)
                options = "guest_tso4=off,guest_tso6=off" if row == "guest-ferry-notso" else ""
                self.guest = qg.Guest(f"fbt-{row}", GUEST_MAC, sock, f"{ADDRESSES[1]}/24", workdir,
                                      device_options=options)
            else:
                self.guest = qg.Guest(f"fbt-{row}", GUEST_MAC, None, f"{ADDRESSES[1]}/24", workdir,
                                      tap=tap)
            # The same CPU for QEMU (all its threads) in both rows; Ferry has the other one.
            self.guest.cmd = ["taskset", "-c", GUEST_CPU] + self.guest.cmd
            self.guest.start()
            # Ferry made its TAP already; QEMU makes its own while it starts.
            h.wait_until(lambda: os.path.exists(f"/sys/class/net/{tap}"), 30, f"TAP {tap}")
            move_into(tap, SPACES[0])
            ns(SPACES[0], "ip", "addr", "add", f"{ADDRESSES[0]}/24", "dev", tap)
            ns(SPACES[0], "ip", "link", "set", tap, "up")
            self.guest.wait_commands()
            self.guest.command(f"iperf3 {GUEST_IPERF_PORT}")
        except BaseException:
            self.teardown()
            raise

    def qemu_pid(self) -> int:
        """QEMU's pid: taskset and run-test-guest.sh exec `timeout`, whose one child execs
        (setpriv and) QEMU."""
        pid = self.guest.proc.pid
        for _ in range(3):
            with open(f"/proc/{pid}/comm") as f:
                if f.read().startswith("qemu"):
                    return pid
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                children = f.read().split()
            if len(children) != 1:
                break
            pid = int(children[0])
        raise RuntimeError(f"no QEMU process under {self.guest.proc.pid}")

    def teardown(self):
        if self.guest is not None:
            self.guest.stop()
        if self.ferry is not None:
            self.ferry.stop()
        run("ip", "netns", "del", SPACES[0], check=False)


def measure_guest(setup: GuestSetup, streams: int, seconds: int,
                  reverse: bool) -> tuple[float, float | None, float]:
    """(Gbit/s, Ferry CPU s/GB or None, QEMU CPU s/GB) for one iperf3 run against the guest."""
    qemu = setup.qemu_pid()
    cmd = ["iperf3", "-c", ADDRESSES[1], "-p", str(GUEST_IPERF_PORT), "-P", str(streams),
           "-t", str(seconds), "-J"] + (["-R"] if reverse else [])
    for attempt in range(3):
        # The guest's server, on its slow emulated CPU, may still be winding the last test up:
        # a client that comes too early has its control connection reset.
        time.sleep(1 + 2 * attempt)
        before = jiffies(setup.ferry.pid) if setup.ferry else 0
        qemu_before = jiffies(qemu)
        report = json.loads(ns(SPACES[0], *cmd, check=False).stdout)
        after = jiffies(setup.ferry.pid) if setup.ferry else 0
        qemu_after = jiffies(qemu)
        if "error" not in report:
            break
        print(f"iperf3 against the guest ({setup.row}): {report['error']}", flush=True)
    else:
        raise RuntimeError(f"iperf3 against the guest ({setup.row}) failed 3 times")
    result = report["end"]["sum_received"]
    gbytes = result["bytes"] / 1e9
    tick = os.sysconf("SC_CLK_TCK")
    ferry_cpu = (after - before) / tick / gbytes if setup.ferry else None
    return result["bits_per_second"] / 1e9, ferry_cpu, (qemu_after - qemu_before) / tick / gbytes


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


def measure_guest_row(row: str, r: int, seconds: int, workdir: str,
                      results: dict[tuple[str, str, int], list[tuple[float, float | None, float]]]):
    setup = GuestSetup(row, workdir)
    try:
        for direction in DIRECTIONS:
            for streams in (1, 4):
                value = measure_guest(setup, streams, seconds, reverse=direction == "guest -> host")
                results.setdefault((row, direction, streams), []).append(value)
                cpu = f"{value[1]:.2f} Ferry CPU s/GB, " if value[1] is not None else ""
                print(f"round {r + 1} {row:16s} {direction} P={streams}: {value[0]:6.2f} Gbit/s "
                      f"{cpu}{value[2]:.2f} QEMU CPU s/GB", flush=True)
    finally:
        setup.teardown()


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
    guest_results: dict[tuple[str, str, int], list[tuple[float, float | None, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-tcp-") as workdir:
        for r in range(args.rounds):
            for row in rows:
                if row in GUEST_ROWS:
                    measure_guest_row(row, r, args.seconds, workdir, guest_results)
                    continue
                setup = Setup(row, workdir)
                try:
                    for streams in (1, 4):
                        value = measure(setup, streams, args.seconds)
                        results.setdefault((row, streams), []).append(value)
                        cpu = f"{value[1]:.2f} CPU s/GB" if value[1] is not None else ""
                        print(f"round {r + 1} {row:16s} P={streams}: {value[0]:6.2f} Gbit/s {cpu}", flush=True)
                finally:
                    setup.teardown()
    namespace_rows = [row for row in rows if row in NAMESPACE_ROWS]
    if namespace_rows:
        print()
        print(f"| row | streams | Gbit/s (median of {args.rounds}) | × bridge | Ferry CPU s/GByte |")
        print("|---|---|---|---|---|")
    for streams in (1, 4) if namespace_rows else ():
        base = results.get(("bridge", streams))
        base_median = sorted(v[0] for v in base)[len(base) // 2] if base else None
        for row in namespace_rows:
            values = results[(row, streams)]
            gbits = sorted(v[0] for v in values)[len(values) // 2]
            cpus = sorted(v[1] for v in values if v[1] is not None)
            cpu = f"{cpus[len(cpus) // 2]:.2f}" if cpus else "—"
            ratio = f"{gbits / base_median:.2f}" if base_median else "—"
            print(f"| {row} | {streams} | {gbits:.2f} | {ratio} | {cpu} |")
    guest_rows = [row for row in rows if row in GUEST_ROWS]
    if guest_rows:
        print()
        print(f"| row | direction | streams | Gbit/s (median of {args.rounds}) | × guest-qemutap "
              f"| Ferry CPU s/GByte | QEMU CPU s/GByte |")
        print("|---|---|---|---|---|---|---|")
    for direction in DIRECTIONS if guest_rows else ():
        for streams in (1, 4):
            base = guest_results.get(("guest-qemutap", direction, streams))
            base_median = middle([v[0] for v in base]) if base else None
            for row in guest_rows:
                values = guest_results[(row, direction, streams)]
                gbits = middle([v[0] for v in values])
                ferry_cpus = [v[1] for v in values if v[1] is not None]
                ferry_cpu = f"{middle(ferry_cpus):.2f}" if ferry_cpus else "—"
                qemu_cpu = middle([v[2] for v in values])
                ratio = f"{gbits / base_median:.2f}" if base_median else "—"
                print(f"| {row} | {direction} | {streams} | {gbits:.2f} | {ratio} | {ferry_cpu} "
                      f"| {qemu_cpu:.2f} |")


if __name__ == "__main__":
    try:
        main()
    finally:
        h.cleanup_all()
