#!/usr/bin/env python3
"""Soak: Ferry forwards between two testpmd front-ends for a given time while everything
around it changes, then every frame is accounted for and Ferry's memory and descriptors are
back where they started.

    flock /tmp/ferry-integration.lock tools/soak.py --seconds 600 [--report soak.json]

Run as root (dpdk-testpmd needs it), after `swift build -c release --product ferry`
(FERRY_BIN overrides the binary). What happens, for --seconds:

* front-end A (testpmd txonly) sends 64-byte frames to one MAC address, which a static FDB
  entry pins to the port of front-end B (testpmd rxonly): every frame Ferry takes from A has
  exactly one place to go;
* every second a port is added (`ferry ctl port add`: a sink in VLAN 1, a TAP in VLAN 20, an
  unattached vhost-user socket trunking 30,40) and the oldest of the added ones removed
  (`port del`), and an FDB entry for another MAC is added and an older one removed;
* a client hammers the control socket with stats, show and malformed requests on connections
  it opens and closes, and each request must get its one reply;
* every --reconnect seconds a front-end reconnects: A alone, or (every other time) both:
  A stops, B drains and stops, B and A start again.

At the end the counts reconcile exactly: frames A sent = frames B received + the drops Ferry
counted on the two ports, each under a reason (and per link: A's frames = what Ferry took from
A + its drops there; what Ferry gave B = what B received). Ferry's open descriptors and guest
memory mappings equal the baseline taken after warm-up (both front-ends attached, no extra
ports), and its anonymous memory (RssAnon) is within --rss-slack of it.
Exit status 0 when all of that holds; the figures are printed as JSON (and written to --report).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "Integration"))
import harness as h  # noqa: E402

A_MAC = "02:00:00:00:5a:01"
# testpmd txonly sends to its --eth-peer address; the static entry sends it to B's port.
PEER_MAC = "02:00:00:00:5b:01"
CHURN_VLANS = {"sink": 1, "tap": 20, "vhost": 30}


def resources(pid: int) -> dict:
    """Ferry's footprint: descriptors, guest-memory mappings, resident memory (kB)."""
    status = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    with open(f"/proc/{pid}/maps") as f:
        # Guest memory arrives as memfds (testpmd --no-huge) or hugetlbfs files.
        guest_maps = sum(1 for line in f if "memfd:" in line or "/hugepages" in line or "map_" in line)
    return {
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "guest_mappings": guest_maps,
        "rss_kb": int(status["VmRSS"].split()[0]),
        "rss_anon_kb": int(status["RssAnon"].split()[0]),
        "rss_shmem_kb": int(status["RssShmem"].split()[0]),
        "threads": int(status["Threads"]),
    }


class ControlHammer(threading.Thread):
    """Requests on the control socket as fast as they are answered, good and bad, over
    connections that come and go; counts requests and replies."""

    REQUESTS = [
        b'{"cmd":"stats"}',
        b'{"cmd":"show","what":"fdb"}',
        b'{"cmd":"show","what":"ports"}',
        b'not json at all',
        b'{"cmd":"no-such-command"}',
        b'{"cmd":"fdb-del","mac":"zz:zz"}',
        b'{"cmd":"port","op":"del","name":"no-such-port"}',
    ]

    def __init__(self, control: str):
        super().__init__(name="control-hammer", daemon=True)
        self.control = control
        self.stop_event = threading.Event()
        self.requests = 0
        self.replies = 0
        self.error_replies = 0
        self.connections = 0
        self.problem: str | None = None

    def run(self):
        rng = random.Random(7)
        while not self.stop_event.is_set() and self.problem is None:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(10)
                    s.connect(self.control)
                    self.connections += 1
                    pending = b""
                    for _ in range(rng.randint(1, 40)):
                        if self.stop_event.is_set():
                            break
                        batch = [rng.choice(self.REQUESTS) for _ in range(rng.randint(1, 5))]
                        s.sendall(b"".join(r + b"\n" for r in batch))
                        self.requests += len(batch)
                        got = 0
                        while got < len(batch):
                            chunk = s.recv(1 << 20)
                            if not chunk:
                                raise ConnectionError("Ferry closed the control connection")
                            pending += chunk
                            *lines, pending = pending.split(b"\n")
                            for line in lines:
                                got += 1
                                if "error" in json.loads(line):
                                    self.error_replies += 1
                        self.replies += got
            except (OSError, ValueError, ConnectionError) as exc:
                self.problem = f"control socket: {exc!r} after {self.requests} requests"


class Soak:
    def __init__(self, args):
        self.args = args
        self.lab = h.Lab("soak", keep_logs=args.logs)
        self.rng = random.Random(args.seed)
        self.sock_a = self.lab.path("a.sock")
        self.sock_b = self.lab.path("b.sock")
        self.ferry: h.Ferry | None = None
        self.a: h.Testpmd | None = None
        self.b: h.Testpmd | None = None
        self.sent = 0          # sum of A sessions' TX-packets
        self.received = 0      # sum of B sessions' RX-packets
        self.sessions = {"a": 0, "b": 0}
        self.added_ports: list[tuple[str, str]] = []   # (name, kind), oldest first
        self.fdb_entries: list[tuple[str, int, str]] = []  # (mac, vlan, port)
        self.counts = {"ports_added": 0, "ports_removed": 0, "fdb_added": 0, "fdb_removed": 0,
                       "fdb_gone_with_port": 0}
        self.taps: set[str] = set()

    # -- front-ends

    def start_a(self):
        self.a = self.lab.virtio_user(self.sock_a, "txonly", cpu=1, txpkts=64, mac=A_MAC,
                                      extra_app=[f"--eth-peer=0,{PEER_MAC}"]).start()
        self.sessions["a"] += 1

    def stop_a(self):
        t = self.a.stop()
        if "TX-packets" not in t:
            raise h.TestpmdError(f"front-end A printed no totals\n{self.a.log_tail()}")
        self.sent += t["TX-packets"]

    def start_b(self):
        self.b = self.lab.virtio_user(self.sock_b, "rxonly", cpu=1).start()
        self.sessions["b"] += 1

    def stop_b(self):
        # Everything Ferry put in B's ring must be read before B goes: A is stopped, so
        # Ferry's and B's counts come to rest.
        h.wait_stable(lambda: (self.ferry.port("b")["tx_packets"], self.b.nic_value("RX-packets")),
                      quiet=2.0, timeout=60, desc="B's ring to drain")
        t = self.b.stop()
        if "RX-packets" not in t:
            raise h.TestpmdError(f"front-end B printed no totals\n{self.b.log_tail()}")
        self.received += t["RX-packets"]

    def reconnect(self, both: bool):
        self.stop_a()
        if both:
            self.stop_b()
            self.start_b()
        self.start_a()

    # -- churn

    def ctl_ok(self, *args: str):
        res = h.ctl_run(self.ferry, *args)
        if res.returncode != 0:
            raise h.FerryError(f"ferry ctl {' '.join(args)}: {res.stderr.strip()}")

    def churn_ports(self, n: int):
        kind = ("sink", "tap", "vhost")[n % 3]
        name = f"c{n}"
        if kind == "sink":
            spec = f"sink:name={name},vlan=1"
        elif kind == "tap":
            tap = f"fsk{os.getpid() % 10000}x{n % 8}"
            self.taps.add(tap)
            spec = f"tap:{tap},name={name},vlan=20"
        else:
            spec = f"vhost:{self.lab.path(f'c{n % 8}.sock')},name={name},trunk=30,40"
        self.ferry.ctl("port", "add", spec)
        self.added_ports.append((name, kind))
        self.counts["ports_added"] += 1
        if len(self.added_ports) > 3:
            self.remove_port(*self.added_ports[0])

    def remove_port(self, name: str, kind: str):
        self.ferry.ctl("port", "del", name)
        self.added_ports.remove((name, kind))
        self.counts["ports_removed"] += 1
        # The port's entries went with it.
        gone = [e for e in self.fdb_entries if e[2] == name]
        self.fdb_entries = [e for e in self.fdb_entries if e[2] != name]
        self.counts["fdb_gone_with_port"] += len(gone)

    def churn_fdb(self, n: int):
        targets = [("a", 1), ("b", 1)] + [(name, CHURN_VLANS[kind]) for name, kind in self.added_ports]
        port, vlan = self.rng.choice(targets)
        mac = f"02:5c:00:00:{(n >> 8) & 0xff:02x}:{n & 0xff:02x}"
        self.ctl_ok("fdb", "add", mac, "--port", port, "--vlan", str(vlan))
        self.fdb_entries.append((mac, vlan, port))
        self.counts["fdb_added"] += 1
        if len(self.fdb_entries) > 20:
            self.remove_fdb(self.fdb_entries[0])

    def remove_fdb(self, entry):
        mac, vlan, _ = entry
        self.ctl_ok("fdb", "del", mac, "--vlan", str(vlan))
        self.fdb_entries.remove(entry)
        self.counts["fdb_removed"] += 1

    # -- the run

    def run(self) -> dict:
        args = self.args
        self.ferry = self.lab.ferry([f"vhost:{self.sock_a},name=a", f"vhost:{self.sock_b},name=b"], cpu=0)
        h.wait_for_socket(self.sock_a, proc=self.ferry)
        self.ctl_ok("fdb", "add", PEER_MAC, "--port", "b")
        self.start_b()
        self.start_a()
        h.wait_until(lambda: self.ferry.port("b")["tx_packets"] > 0, 30, "frames from A to reach B")
        time.sleep(args.warmup)
        baseline = resources(self.ferry.pid)

        hammer = ControlHammer(self.ferry.control)
        hammer.start()
        start = time.monotonic()
        next_reconnect = start + args.reconnect
        reconnects = 0
        tick = 0
        try:
            while time.monotonic() - start < args.seconds:
                tick += 1
                self.churn_ports(tick)
                self.churn_fdb(tick)
                if hammer.problem:
                    raise h.FerryError(hammer.problem)
                if not self.ferry.running():
                    raise h.FerryError(f"Ferry exited during the soak\n{self.ferry.log_tail()}")
                if time.monotonic() >= next_reconnect:
                    reconnects += 1
                    self.reconnect(both=reconnects % 2 == 0)
                    next_reconnect = time.monotonic() + args.reconnect
                time.sleep(max(0.0, start + tick - time.monotonic()))
        finally:
            hammer.stop_event.set()
            hammer.join(30)
        if hammer.problem:
            raise h.FerryError(hammer.problem)

        # Back to the baseline's shape: no extra ports or entries, both front-ends attached.
        for name, kind in list(self.added_ports):
            self.remove_port(name, kind)
        for entry in list(self.fdb_entries):
            self.remove_fdb(entry)
        time.sleep(args.settle)
        final = resources(self.ferry.pid)

        self.stop_a()
        self.stop_b()
        a, b = self.ferry.port("a"), self.ferry.port("b")
        drops_a, drops_b = h.drop_total(a, exclude=()), h.drop_total(b, exclude=())
        report = {
            "seconds": args.seconds,
            "frames": {"sent_by_A": self.sent, "received_by_B": self.received,
                       "ferry_rx_from_A": a["rx_packets"], "ferry_tx_to_B": b["tx_packets"],
                       "drops_on_a": a.get("drops") or {}, "drops_on_b": b.get("drops") or {}},
            "sessions": self.sessions,
            "reconnects": reconnects,
            "churn": self.counts,
            "control": {"requests": hammer.requests, "replies": hammer.replies,
                        "error_replies": hammer.error_replies, "connections": hammer.connections},
            "resources": {"baseline": baseline, "final": final},
        }
        problems = []
        if self.sent == 0 or self.received == 0:
            problems.append("no traffic went through")
        if self.sent != self.received + drops_a + drops_b:
            problems.append(f"A sent {self.sent} != B received {self.received} + drops {drops_a} + {drops_b} "
                            f"(difference {self.sent - self.received - drops_a - drops_b})")
        if self.sent != a["rx_packets"] + drops_a:
            problems.append(f"A sent {self.sent} != Ferry took {a['rx_packets']} + drops on a {drops_a}")
        if self.received != b["tx_packets"]:
            problems.append(f"B received {self.received} != Ferry gave {b['tx_packets']}")
        for key in ("fds", "guest_mappings"):
            if final[key] != baseline[key]:
                problems.append(f"{key}: {final[key]} at the end, {baseline[key]} at the baseline")
        if final["rss_anon_kb"] > baseline["rss_anon_kb"] + args.rss_slack * 1024:
            problems.append(f"RssAnon grew from {baseline['rss_anon_kb']} kB to {final['rss_anon_kb']} kB")
        if hammer.replies != hammer.requests:
            problems.append(f"{hammer.requests} control requests, {hammer.replies} replies")
        report["problems"] = problems
        return report

    def close(self):
        self.lab.close()
        for tap in self.taps:
            subprocess.run(["ip", "link", "del", tap], capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="how long the churn goes on (default 60)")
    parser.add_argument("--reconnect", type=float, default=10, help="seconds between front-end reconnects")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of traffic before the baseline")
    parser.add_argument("--settle", type=float, default=3, help="seconds after the churn before measuring")
    parser.add_argument("--rss-slack", type=int, default=4, help="MiB RssAnon may grow (allocator slack)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report", help="also write the JSON report here")
    parser.add_argument("--logs", help="keep Ferry's and testpmd's logs in this directory")
    args = parser.parse_args()

    problems = h.environment_problems(need_ferry=True, need_testpmd=True)
    if problems:
        print("soak cannot run:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    soak = Soak(args)
    try:
        report = soak.run()
    except (h.HarnessError, TimeoutError, KeyError) as exc:
        print(f"soak failed: {exc}\n{soak.lab.logs(20)}", file=sys.stderr)
        soak.close()
        return 1
    soak.close()
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        Path(args.report).write_text(text + "\n")
    for p in report["problems"]:
        print(f"soak: {p}", file=sys.stderr)
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
