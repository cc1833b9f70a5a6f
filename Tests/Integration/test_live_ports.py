"""Ports added and removed through `ferry ctl port add|del` while a front-end forwards.

Run as root from the repository root, after `swift build -c release`:

    python3 -m pytest -v Tests/Integration/test_live_ports.py

Ferry runs a vhost port 'vm' driven by dpdk-testpmd's virtio-user front-end, and a partner
port on the same VLAN (1):

  * txonly: testpmd sends into 'vm' for as long as the changes go on, Ferry floods it to the
    sink 'sink';
  * rxonly: a generator 'gen' (count=N) sends into 'vm', testpmd receives.

Meanwhile ports come and go, again and again: a TAP (Ferry creates it), a second vhost port
(nobody attaches), on other VLANs, and a sink on VLAN 1 itself (it gets copies of the flood).
At the end the forwarding ports' counters reconcile exactly with testpmd's own totals, with
no drops, `ferry ctl show ports` lists the base ports only, and every TAP and socket the
changes created is gone.

Environment: FERRY_BIN, FERRY_TESTPMD (see harness.py). These tests fail (they do not skip)
when testpmd, the Ferry binary or root is missing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

import harness as h

ROUNDS = 6
GEN_COUNT = 300_000
GEN_DST = "02:00:00:00:00:02"
GEN_SRC = "02:00:00:00:00:01"


# Every test here runs testpmd against Ferry (conftest.py checks the machine once); `lab` is
# conftest.py's.
pytestmark = pytest.mark.usefixtures("testpmd_machine")


@pytest.fixture(autouse=True)
def no_taps_left():
    """TAPs a test's Ferry made and did not delete go, after that Ferry stopped (an autouse
    fixture is set up before and torn down after the lab)."""
    yield
    for name in tap_names():
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def tap_names() -> list[str]:
    return [f"flv{os.getpid() % 100_000}x{i}" for i in range(ROUNDS)]


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def port_names(ferry: h.Ferry) -> list[str]:
    return [p["name"] for p in ferry.ctl("show", "ports")["ports"]]


def churn(lab: h.Lab, ferry: h.Ferry, base: list[str]):
    """Adds and removes ports of several kinds, ROUNDS times, checking each reply and what the
    port left behind on the host."""
    for i, tap in enumerate(tap_names()):
        sock = lab.path(f"extra{i}.sock")
        added = ferry.ctl("port", "add", f"tap:{tap},name=t{i},vlan=20")["port"]
        assert (added["name"], added["kind"], added["vlan"]) == (f"t{i}", "tap", "access 20"), added
        assert link_exists(tap), f"port add made no TAP {tap}"
        added = ferry.ctl("port", "add", f"vhost:{sock},name=v{i},trunk=30,40")["port"]
        assert (added["kind"], added["state"], added["vlans"]) == ("vhost", "listening", [30, 40]), added
        assert os.path.exists(sock), f"port add made no socket {sock}"
        added = ferry.ctl("port", "add", f"sink:name=s{i}")["port"]
        assert added["index"] == len(base) + 2, f"the lowest free number is {len(base) + 2}: {added}"
        assert port_names(ferry) == base + [f"t{i}", f"v{i}", f"s{i}"]
        assert h.ctl_error(ferry, "port", "add", f"sink:name=t{i}") == f"a port is already named 't{i}'"

        removed = ferry.ctl("port", "del", f"t{i}")["port"]
        assert removed["name"] == f"t{i}", removed
        assert not link_exists(tap), f"the TAP {tap} Ferry created outlived `port del`"
        ferry.ctl("port", "del", f"v{i}")
        assert not os.path.exists(sock), f"the socket {sock} outlived `port del`"
        ferry.ctl("port", "del", f"s{i}")
        assert h.ctl_error(ferry, "port", "del", f"s{i}") == f"no port is named 's{i}'"
    assert port_names(ferry) == base


def test_ports_come_and_go_while_testpmd_sends(lab):
    # Started from a config file, as an operator would; the changes come through ferry ctl.
    sock = lab.path("vm.sock")
    config = lab.path("ferry.yaml")
    with open(config, "w") as f:
        f.write(f"ports:\n  - {{name: vm, type: vhost, path: {sock}}}\n  - {{name: sink, type: sink}}\n")
    ferry = lab.ferry([], cpu=0, extra_args=["--config", config])
    h.wait_for_socket(sock, proc=ferry)
    tp = lab.virtio_user(sock, "txonly", cpu=1, txpkts=64).start()
    h.wait_until(lambda: ferry.port("vm")["rx_packets"] > 0, 30, "frames from testpmd")

    churn(lab, ferry, ["vm", "sink"])

    t = tp.stop()
    assert "TX-packets" in t, f"testpmd printed no final totals\n{tp.log_tail()}"
    h.wait_stable(lambda: tuple(h.counters(ferry.port(n)) for n in ("vm", "sink")), quiet=1.0,
                  timeout=30, desc="Ferry's counters to settle")
    vm, sink = ferry.port("vm"), ferry.port("sink")
    ctx = f"testpmd totals {t}\nferry vm={vm}\nferry sink={sink}\n{lab.logs(15)}"
    assert t["TX-packets"] > 0, ctx
    assert vm["rx_packets"] == t["TX-packets"], f"Ferry took other than testpmd sent\n{ctx}"
    assert h.drop_total(vm, exclude=()) == 0, ctx
    assert sink["tx_packets"] == vm["rx_packets"], f"the sink got other than Ferry took\n{ctx}"
    assert h.drop_total(sink, exclude=()) == 0, ctx


def test_ports_come_and_go_while_testpmd_receives(lab):
    sock = lab.path("vm.sock")
    # The generator waits until testpmd's receive rings are up (see GenPort's delay), then
    # emits only what the guest has room for: count=N means N delivered.
    gen = f"gen:dst={GEN_DST},src={GEN_SRC},size=64,count={GEN_COUNT},delay=2000,name=gen"
    ferry = lab.ferry([f"vhost:{sock},name=vm", gen], cpu=0)
    h.wait_for_socket(sock, proc=ferry)
    tp = lab.virtio_user(sock, "rxonly", cpu=1).start()

    churn(lab, ferry, ["vm", "gen"])

    h.wait_until(lambda: ferry.port("gen")["rx_packets"] >= GEN_COUNT, 300,
                 f"gen to produce {GEN_COUNT} frames")
    h.wait_stable(lambda: tp.nic_value("RX-packets"), quiet=2.0, timeout=60,
                  desc="testpmd's RX counter to settle")
    t = tp.stop()
    assert "RX-packets" in t, f"testpmd printed no final totals\n{tp.log_tail()}"
    g, vm = ferry.port("gen"), ferry.port("vm")
    ctx = f"testpmd totals {t}\nferry gen={g}\nferry vm={vm}\n{lab.logs(15)}"
    assert g["rx_packets"] == GEN_COUNT, ctx
    assert vm["tx_packets"] == GEN_COUNT, f"Ferry delivered other than gen made\n{ctx}"
    assert h.drop_total(vm, exclude=()) == 0 and h.drop_total(g, exclude=()) == 0, ctx
    assert t["RX-packets"] == GEN_COUNT, f"testpmd received other than Ferry delivered\n{ctx}"


def test_refused_changes_leave_the_switch_alone(lab):
    ferry = lab.ferry(["sink:name=a"])
    assert h.ctl_error(ferry, "port", "add", "bogus:x") == \
        "port 'bogus:x': unknown port type 'bogus' (vhost, tap, packet, xdp, gen, sink, vxlan, virtio-user)"
    assert h.ctl_error(ferry, "port", "add", f"vhost:{ferry.control}") == \
        f"port 'vhost:{ferry.control}': {ferry.control} is Ferry's control socket"
    assert h.ctl_error(ferry, "port", "add", "packet:ferry-none0").startswith("port 'packet:ferry-none0': ")
    assert h.ctl_error(ferry, "port", "del", "nope") == "no port is named 'nope'"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(ferry.control)
        s.sendall(b'{"cmd":"port"}\n{"cmd":"port","op":"move"}\n{"cmd":"port","op":"add"}\n')
        replies = b""
        while replies.count(b"\n") < 3:
            chunk = s.recv(65536)
            if not chunk:
                break
            replies += chunk
    assert [json.loads(line) for line in replies.splitlines()] == [
        {"error": 'request has no "op" (one of: add, del)'},
        {"error": "unknown port operation 'move' (one of: add, del)"},
        {"error": 'request has no "spec"'},
    ]
    assert port_names(ferry) == ["a"]


def test_ports_added_at_run_time_go_when_ferry_stops(lab):
    ferry = lab.ferry(["sink:name=a"])
    tap = f"flv{os.getpid() % 100_000}st"
    sock = lab.path("late.sock")
    ferry.ctl("port", "add", f"tap:{tap},name=t")
    ferry.ctl("port", "add", f"vhost:{sock},name=v")
    assert link_exists(tap) and os.path.exists(sock)
    assert ferry.stop() == 0, ferry.log_tail()
    assert not link_exists(tap), f"the TAP {tap} Ferry created outlived SIGINT"
    assert not os.path.exists(sock), f"the socket {sock} outlived SIGINT"
