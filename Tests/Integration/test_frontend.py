"""Ferry as a vhost-user front-end (`virtio-user:` ports): `ferry lab` drives two of them into
a switch that sits between them as between two guests, the device under test: another Ferry
(`ferry run` with two vhost ports) and dpdk-testpmd io with two net_vhost ports. Every frame
the generator sends must reach the analyser, at a modest rate.

Run as root from the repository root, after `swift build -c release`:

    python3 -m pytest -v Tests/Integration/test_frontend.py

These tests fail (they do not skip) when testpmd, the Ferry binary or root is missing. About 40 s.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

import harness as h

GEN_SRC = "02:00:00:00:00:01"
GEN_DST = "02:00:00:00:00:02"  # nobody's: the device under test floods it to its other port
RATE, SECONDS = 20_000, 2
pytestmark = pytest.mark.usefixtures("testpmd_machine")


def lab_through(lab: h.Lab, a: str, b: str, rate: int = RATE, queue_a: int = 1024) -> tuple[dict, str]:
    """`ferry lab throughput` on CPU 0: gen -> virtio-user A (VLAN 10) ... B (VLAN 20) -> sink."""
    out = lab.path(f"lab-{time.monotonic_ns()}.json")
    cmd = [h.ferry_binary(), "lab", "throughput",
           "--port", f"gen:dst={GEN_DST},src={GEN_SRC},size=64,flows=4,name=g,vlan=10",
           "--port", f"virtio-user:{a},queue_size={queue_a},name=a,vlan=10",
           "--port", f"virtio-user:{b},queue_size=1024,name=b,vlan=20",
           "--port", "sink:name=s,vlan=20",
           "--rate", f"{rate}pps", "--duration", str(SECONDS), "--cpus", "0", "--json", out]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout}\n{p.stderr}\n{lab.logs()}"
    assert "not every port is running" not in p.stderr, f"{p.stderr}\n{lab.logs()}"
    with open(out) as f:
        return json.load(f), p.stdout + p.stderr


def check_every_frame_arrived(result: dict, table: str) -> dict:
    (trial,) = result["trials"]
    n = RATE * SECONDS
    # The count is rounded up to whole bursts of 32.
    assert n <= trial["sent"] < n + 32, table
    assert (trial["received"], trial["lost"], trial["duplicates"]) == (trial["sent"], 0, 0), table
    assert 0 < trial["latency"]["p50_ns"] <= trial["latency"]["max_ns"], table
    return trial


def test_ferry_between_two_virtio_user_ports(lab):
    """Another Ferry (two vhost ports, CPU 1) as the device under test."""
    a, b = lab.path("a.sock"), lab.path("b.sock")
    dut = lab.ferry([f"vhost:{a},name=a", f"vhost:{b},name=b"], cpu=1)
    result, table = lab_through(lab, a, b)
    trial = check_every_frame_arrived(result, f"{table}\n{lab.logs()}")
    pa, pb = dut.port("a"), dut.port("b")
    ctx = f"dut a {pa}\ndut b {pb}\n{table}"
    # The lab's learning frames (RFC 2544 §23) came through too, before the trial.
    assert pa["rx_packets"] == pb["tx_packets"] >= trial["sent"], ctx
    assert h.drop_total(pa, exclude=()) == h.drop_total(pb, exclude=()) == 0, ctx


def test_testpmd_io_between_two_virtio_user_ports(lab):
    """dpdk-testpmd io with two net_vhost ports (CPU 1) as the device under test."""
    a, b = lab.path("a.sock"), lab.path("b.sock")
    tp = lab.vhost_backend(a, "io", cpu=1, extra_eal=["--vdev", f"net_vhost1,iface={b}"])
    tp.owned_sockets.append(b)
    tp.start()
    result, table = lab_through(lab, a, b)
    trial = check_every_frame_arrived(result, f"{table}\n{lab.logs()}")
    tp.stop()
    t0, t1 = tp.totals(0), tp.totals(1)
    ctx = f"testpmd port 0 {t0}\nport 1 {t1}\n{table}"
    # The lab's learning frames (RFC 2544 §23) came through too, before the trial.
    assert t0["RX-packets"] == t1["TX-packets"] >= trial["sent"], ctx


def test_a_trials_drops_say_which_ring_lost_its_frames(lab):
    """A 16-entry ring into Ferry's device at 1 Mpps overflows: the trial's `drops` name the lab's
    port and `tx_full`, and they, with what the device dropped, are the trial's loss: no more
    (a drop counted that the analyser received) and nothing unaccounted for."""
    a, b = lab.path("a.sock"), lab.path("b.sock")
    dut = lab.ferry([f"vhost:{a},name=a", f"vhost:{b},name=b"], cpu=1)
    result, table = lab_through(lab, a, b, rate=1_000_000, queue_a=16)
    (trial,) = result["trials"]
    device = sum(h.drop_total(dut.port(p), exclude=()) for p in ("a", "b"))
    ctx = f"trial drops {trial.get('drops')}, lost {trial['lost']}, device drops {device}\n{table}\n{lab.logs()}"
    assert trial["drops"].get("a", {}).get("tx_full", 0) > 0, f"the 16-entry ring never filled\n{ctx}"
    lab_drops = sum(n for reasons in trial["drops"].values() for n in reasons.values())
    # The device's counters run from its start (the lab's learning frames too): an upper bound.
    assert lab_drops <= trial["lost"] <= lab_drops + device, ctx
