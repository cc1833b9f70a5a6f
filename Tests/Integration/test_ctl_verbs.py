"""`ferry ctl fdb flush`, `ferry ctl stats --clear`, the rates in `ctl stats`, `ctl stats
--queues` and `ferry ctl top`, against the real binary.

Run from the repository root, after `swift build -c release`:

    python3 -m pytest -v Tests/Integration/test_ctl_verbs.py

Generators and sinks only (no root, testpmd or QEMU). A `gen` port with `count=N` emits N
frames into its VLAN and stops, so what it leaves in the forwarding database and the
counters is known exactly:

* flush: four finished generators, each learned in its VLAN, and two static entries; every
  flush's reply is checked against the entries it must have removed.
* clear and rates: a finished generator (VLAN 1) and a generator that never stops, alone in
  VLAN 30 with one sink. After `stats --clear` the quiet ports read exactly zero, the busy
  ones less than their totals, and /metrics still has the totals; a second finished generator
  then counts exactly its frames since the clear. The rates are checked against the counts
  the test itself sees over a few seconds, and against each other (64-byte frames: bits per
  second are exactly 512 × frames per second).
* top: through a pipe, plain tables each second; on a pseudo-terminal, redrawn, quitting on q
  and on Ctrl-C (a key there, not a signal) with the terminal's modes given back.

Environment: FERRY_BIN (see harness.py). The tests fail (they do not skip) when the Ferry
binary is missing.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import subprocess
import termios
import time
import urllib.request

import pytest

import harness as h

COUNT = 100
SIZE = 64

pytestmark = pytest.mark.usefixtures("ferry_binary")


def ctl_json(ferry: h.Ferry, *args: str) -> dict:
    return json.loads(h.ctl_ok(ferry, *args, "--json"))


def fdb(ferry: h.Ferry) -> list[dict]:
    return ctl_json(ferry, "show", "fdb")["fdb"]


def gen(name: str, src: str, vlan: int = 1, count: int | None = COUNT) -> str:
    spec = f"gen:dst=02:00:00:00:00:ee,src={src},size={SIZE},name={name},vlan={vlan}"
    return spec + (f",count={count}" if count is not None else "")


def port(stats: dict, name: str) -> dict:
    return h.port_stats(stats, name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(url: str, name: str, port_name: str) -> float:
    """The sum over queues of `name` for one port, from a /metrics scrape."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + "{") and f'port="{port_name}"' in line:
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    assert seen, f"no {name} for port {port_name} in the scrape"
    return total


# --------------------------------------------------------------------------- fdb flush


def test_fdb_flush_removes_learned_entries_by_port_and_vlan_and_static_only_when_asked(lab):
    learned = {"g": ("02:00:00:00:00:01", 1), "g2": ("02:00:00:00:00:02", 1),
               "g10": ("02:00:00:00:00:0a", 10), "g20": ("02:00:00:00:00:14", 20)}
    ports = [gen(name, mac, vlan) for name, (mac, vlan) in learned.items()]
    ports += ["sink:name=s", "sink:name=t,trunk=10,20"]
    ferry = lab.ferry(ports)
    h.wait_until(lambda: {(e["mac"], e["vlan"]) for e in fdb(ferry) if not e["static"]} == set(learned.values()),
                 10, "every generator's source learned")
    h.wait_until(lambda: all(p["state"] == "finished" for p in ctl_json(ferry, "show", "ports")["ports"]
                             if p["kind"] == "gen"), 10, "the generators to finish (nothing learned again)")
    h.ctl_ok(ferry, "fdb", "add", "02:00:00:00:00:99", "--port", "s")
    h.ctl_ok(ferry, "fdb", "add", "02:00:00:00:00:98", "--port", "t", "--vlan", "20")

    def flush(*args: str) -> int:
        reply = ctl_json(ferry, "fdb", "flush", *args)
        assert reply["ok"] is True and set(reply) == {"ok", "removed"}, reply
        return reply["removed"]

    assert flush("--port", "g10", "--vlan", "20") == 0, "g10's entry is in VLAN 10"
    assert flush("--vlan", "10") == 1
    assert flush("--port", "g") == 1
    assert {e["mac"] for e in fdb(ferry) if not e["static"]} == {"02:00:00:00:00:02", "02:00:00:00:00:14"}
    # Everything learned; the text form says how many.
    assert h.ctl_ok(ferry, "fdb", "flush") == "removed 2 entries\n"
    assert [(e["mac"], e["static"]) for e in fdb(ferry)] == [("02:00:00:00:00:99", True), ("02:00:00:00:00:98", True)]
    assert ctl_json(ferry, "show", "fdb")["counters"]["entries"] == 2
    assert flush() == 0, "static entries stay without --static"
    assert flush("--static", "--vlan", "20") == 1
    assert h.ctl_ok(ferry, "fdb", "flush", "--static") == "removed 1 entry\n"
    assert fdb(ferry) == []

    assert h.ctl_error(ferry, "fdb", "flush", "--port", "nope") == "no port is named 'nope'"
    assert h.ctl_error(ferry, "fdb", "flush", "--vlan", "5000") == "vlan 5000 is not 1...4094"
    log = ferry.log_text()
    assert "fdb: flushed 1 learned entries (vlan 10)" in log, log[-2000:]
    assert "fdb: flushed 1 learned and static entries (vlan 20)" in log, log[-2000:]


# --------------------------------------------------------------------------- stats --clear, rates, top


@pytest.fixture
def busy(lab):
    """g: COUNT frames flooded in VLAN 1 to s and u. gr: a generator that never stops, alone
    with the sink r in VLAN 30 (so its frames go to r only, as fast as Ferry moves them)."""
    metrics = free_port()
    ferry = lab.ferry([gen("g", "02:00:00:00:00:01"), "sink:name=s", "sink:name=u",
                       gen("gr", "02:00:00:00:00:30", vlan=30, count=None), "sink:name=r,vlan=30"],
                      extra_args=["--metrics", f"127.0.0.1:{metrics}"])
    ferry.metrics_url = f"http://127.0.0.1:{metrics}/metrics"
    h.wait_until(lambda: port(ferry.stats(), "u")["tx_packets"] == COUNT, 10, f"g's {COUNT} frames flooded to u")
    return ferry


def test_stats_clear_counts_from_the_mark_while_metrics_keep_counting(busy):
    ferry = busy
    before = ferry.stats()
    assert before["cleared"] is False and before["elapsed"] > 0, before
    assert h.ctl_ok(ferry, "stats", "--clear") == ""

    cleared = ferry.stats()
    assert cleared["cleared"] is True and 0 <= cleared["elapsed"] < 5, cleared
    for name in ("g", "s", "u"):
        p = port(cleared, name)
        assert (p["rx_packets"], p["rx_bytes"], p["tx_packets"], p["tx_bytes"], p["drops"]) == (0, 0, 0, 0, {}), p
        assert [q["tx_packets"] for q in p["queues"]] == [0], p
    # The busy pair counts from the clear: less than before it, and rising.
    r_cleared = port(cleared, "r")["tx_packets"]
    r_total = metric(ferry.metrics_url, "ferry_port_tx_packets_total", "r")
    assert r_cleared < r_total, (r_cleared, r_total)
    h.wait_until(lambda: port(ferry.stats(), "r")["tx_packets"] > r_cleared, 10, "r's count to rise after the clear")
    assert port(ferry.stats(), "r")["tx_packets"] < metric(ferry.metrics_url, "ferry_port_tx_packets_total", "r")
    # Prometheus' counters never went back.
    assert metric(ferry.metrics_url, "ferry_port_tx_packets_total", "u") == COUNT
    assert cleared["switch"]["fdb"]["entries"] == before["switch"]["fdb"]["entries"], "a state, not a count"

    # New traffic after the clear counts exactly, in the table too.
    h.ctl_ok(ferry, "port", "add", gen("g3", "02:00:00:00:00:03"))
    h.wait_until(lambda: port(ferry.stats(), "u")["tx_packets"] == COUNT, 10, "g3's frames flooded to u")
    after = h.wait_stable(lambda: {n: port(ferry.stats(), n)["tx_packets"] for n in ("g", "s", "u")},
                          quiet=0.5, timeout=10)
    assert after == {"g": COUNT, "s": COUNT, "u": COUNT}, after
    assert metric(ferry.metrics_url, "ferry_port_tx_packets_total", "u") == 2 * COUNT
    rows = {r.split()[0]: r.split() for r in h.ctl_ok(ferry, "stats").splitlines()[1:]}
    assert rows["u"][3:7] == ["0", "0", str(COUNT), str(COUNT * SIZE)], rows["u"]

    res = h.ctl_run(ferry, "stats", "--clear", "--json")
    assert res.returncode == 64 and "--clear prints nothing" in res.stderr, res


def test_rates_match_the_counts_and_each_other(busy):
    ferry = busy
    h.wait_until(lambda: all("rates" in p for p in ferry.stats()["ports"]), 5, "every port sampled twice")
    t0, first = time.monotonic(), ferry.stats()
    time.sleep(3)
    t1, second = time.monotonic(), ferry.stats()
    seen_pps = (port(second, "r")["tx_packets"] - port(first, "r")["tx_packets"]) / (t1 - t0)
    assert seen_pps > 1000, f"gr→r moved only {seen_pps:.0f} frames/s"

    rates = {p["name"]: p["rates"] for p in second["ports"]}
    gr, r = rates["gr"], rates["r"]
    assert set(gr) == {"rx_pps", "rx_bps", "tx_pps", "tx_bps", "drops_pps", "interval"}, gr
    assert 0.5 <= gr["interval"] <= 2.5, gr
    # Over one second against over three, on a shared machine: the same order of magnitude.
    assert seen_pps / 3 <= r["tx_pps"] <= seen_pps * 3, (r, seen_pps)
    # Bits are the frames' bytes × 8: exactly 512 a frame, up to the rounding to a tenth.
    assert abs(gr["rx_bps"] - gr["rx_pps"] * SIZE * 8) <= SIZE * 8 * 0.05 + 0.1, gr
    assert abs(r["tx_bps"] - r["tx_pps"] * SIZE * 8) <= SIZE * 8 * 0.05 + 0.1, r
    # What gr takes in goes to r, sampled at the same moment (give or take a burst).
    assert abs(gr["rx_pps"] - r["tx_pps"]) <= 0.05 * r["tx_pps"] + 512 / gr["interval"], (gr, r)
    assert gr["tx_pps"] == r["rx_pps"] == 0 and r["drops_pps"] == 0, (gr, r)
    # g finished long ago; s and u see nothing more.
    for name in ("g", "s", "u"):
        assert rates[name] == {"rx_pps": 0, "rx_bps": 0, "tx_pps": 0, "tx_bps": 0, "drops_pps": 0,
                               "interval": rates[name]["interval"]}, (name, rates[name])

    header, *rows = h.ctl_ok(ferry, "stats").splitlines()
    assert header.split() == ["port", "kind", "state", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes",
                              "rx_pps", "rx_bps", "tx_pps", "tx_bps", "drops_pps", "drops"]
    by_name = {row.split()[0]: row.split() for row in rows}
    assert by_name["u"][7:12] == ["0", "0", "0", "0", "0"], by_name["u"]
    assert re.fullmatch(r"[0-9.]+[kMG]", by_name["r"][10]), by_name["r"]   # tx_bps, shortened

    header, *rows = h.ctl_ok(ferry, "stats", "--queues").splitlines()
    assert header.split() == ["port", "queue", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "drops",
                              "offloads"]
    assert [row.split()[:2] for row in rows] == [[n, "0"] for n in ("g", "s", "u", "gr", "r")], rows
    u = next(row.split() for row in rows if row.startswith("u "))
    assert u[2:6] == ["0", "0", str(COUNT), str(COUNT * SIZE)], u


def test_top_prints_a_table_each_second_busiest_first(busy):
    ferry = busy
    h.wait_until(lambda: all("rates" in p for p in ferry.stats()["ports"]), 5, "every port sampled twice")
    start = time.monotonic()
    res = subprocess.run([ferry.binary, "ctl", "top", "--iterations", "2", "--control", ferry.control],
                         capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    took = time.monotonic() - start
    assert res.returncode == 0 and res.stderr == "", res
    assert 0.9 <= took < 10, took
    lines = res.stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("ports ")]
    assert len(starts) == 2 and starts[0] == 0, res.stdout
    # Each view: the summary, a blank line, the table; a blank line between views.
    for start, end in zip(starts, starts[1:] + [len(lines) + 1]):
        summary, blank, header, *rows = lines[start:end - 1]
        assert blank == "" and lines[end - 2] != "", res.stdout
        assert re.fullmatch(r"ports 5  rx \S+ pps \S+ bps  tx \S+ pps \S+ bps  drops \S+/s", summary), \
            summary
        assert "\x1b" not in res.stdout, "no terminal codes without a terminal"
        assert header.split() == ["port", "kind", "rx_pps", "rx_bps", "tx_pps", "tx_bps", "drops_pps", "drops"]
        names = [row.split()[0] for row in rows]
        assert sorted(names) == ["g", "gr", "r", "s", "u"], rows
        assert set(names[:2]) == {"gr", "r"}, f"the busy pair first: {rows}"
    print(res.stdout)

    res = h.ctl_run(ferry, "top", "--iterations", "0")
    assert res.returncode == 64 and "--iterations must be at least 1" in res.stderr, res


@pytest.mark.parametrize("key", [b"q", b"\x03"], ids=["q", "ctrl-c"])
def test_top_on_a_terminal_redraws_and_quits_on_a_key(busy, key):
    ferry = busy
    master, terminal = pty.openpty()
    modes = termios.tcgetattr(terminal)
    proc = subprocess.Popen([ferry.binary, "ctl", "top", "--control", ferry.control],
                            stdin=terminal, stdout=terminal, stderr=terminal)
    try:
        screen = b""
        deadline = time.monotonic() + 10
        # Two redraws: the first shows it draws, the second that it waits for the key in raw mode.
        while screen.count(b"\x1b[H\x1b[2J") < 2:
            assert time.monotonic() < deadline and proc.poll() is None, (proc.poll(), screen)
            if select.select([master], [], [], 0.2)[0]:
                screen += os.read(master, 65536)
        assert b"(q quits)" in screen and b"port  kind  rx_pps" in screen, screen
        os.write(master, key)
        assert proc.wait(timeout=5) == 0
        # Echo, line editing and Ctrl-C as a signal are back as they were.
        assert termios.tcgetattr(terminal)[3] == modes[3]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(terminal)
