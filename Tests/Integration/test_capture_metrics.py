"""Capture and metrics with real guests: two QEMU guests on Ferry ping each other.

* `ferry ctl capture a -w FILE --count N` while guest A pings guest B: `tcpdump -r FILE`
  shows the ICMP echo requests and replies between their addresses.
* The same streamed: `ferry ctl capture a -w - | tcpdump -r -`.
* A scrape of `--metrics` parses as Prometheus text (a small reader below) and its per-port,
  per-queue counters equal `ferry ctl stats --json` taken right after, with the guests quiet
  (IPv6 off: nothing talks unless a test makes it).

Run as root from the repository root, after `swift build -c release` (or FERRY_BIN=...):

    python3 -m pytest -v Tests/Integration/test_capture_metrics.py

Guests, namespaces and Ferry go at the end of the module, also on failure. ~20 s.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request

import pytest

import harness as h
from test_switch import IP_A, IP_B, Topology, assert_all_answered

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse_prometheus(text: str) -> dict:
    """{(name, frozenset(labels)): value}; fails on anything that is not text format 0.0.4."""
    samples, types = {}, {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in types, f"second TYPE line for {name}"
            types[name] = kind
            continue
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels, rest = {}, m.group(3) or ""
        while rest:
            lm = LABEL.match(rest)
            assert lm, f"bad labels in {line!r}"
            labels[lm.group(1)] = lm.group(2)
            rest = rest[lm.end():]
        assert m.group(1) in types, f"{m.group(1)} has no TYPE line"
        samples[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return samples


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pair(guest_machine, tmp_path_factory):
    if not shutil.which("tcpdump"):
        pytest.fail("cannot run the capture tests: tcpdump is not installed", pytrace=False)
    port = free_port()
    topo = Topology("capm", str(tmp_path_factory.mktemp("capture-metrics")),
                    ferry_args=("--metrics", f"127.0.0.1:{port}"))
    topo.metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:
        yield topo
    finally:
        topo.close()


def capture_cmd(topo: Topology, *args: str) -> list[str]:
    return [topo.ferry.binary, "ctl", "capture", *args, "--control", topo.ferry.control]


def wait_capture_started(topo: Topology, nth: int):
    h.wait_until(lambda: topo.ferry.log_text().count("capture of a (both) started") >= nth, 10,
                 "Ferry to start the capture")


def assert_icmp_between_guests(tcpdump_output: str, topo: Topology):
    request = f"{IP_A} > {IP_B}: ICMP echo request"
    reply = f"{IP_B} > {IP_A}: ICMP echo reply"
    assert request in tcpdump_output and reply in tcpdump_output, \
        f"wanted {request!r} and {reply!r} in tcpdump's output:\n{tcpdump_output}\n" \
        f"{topo.ferry.log_tail(10)}"


def test_capture_to_a_file_shows_the_ping(pair: Topology, tmp_path):
    path = str(tmp_path / "a.pcap")
    capture = subprocess.Popen(capture_cmd(pair, "a", "--count", "8", "-w", path),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_capture_started(pair, 1)
        assert_all_answered(pair.a.ping(IP_B, 4, watch=pair.problem), 4, "guest A -> guest B", pair)
        _, err = capture.communicate(timeout=30)
    finally:
        if capture.poll() is None:
            capture.kill()
            capture.wait()
    assert capture.returncode == 0, f"ferry ctl capture failed: {err}"
    assert "8 frames captured" in err, err
    read = subprocess.run(["tcpdump", "-n", "-r", path], capture_output=True, text=True, timeout=20)
    assert read.returncode == 0, read.stderr
    assert "link-type EN10MB" in read.stderr, read.stderr
    assert len(read.stdout.splitlines()) == 8, read.stdout
    assert_icmp_between_guests(read.stdout, pair)


def test_capture_streamed_to_tcpdump(pair: Topology):
    cmd = " ".join(capture_cmd(pair, "a", "--count", "6", "-w", "-")) + " | tcpdump -n -r -"
    pipeline = subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
    try:
        wait_capture_started(pair, 2)
        assert_all_answered(pair.a.ping(IP_B, 4, watch=pair.problem), 4, "guest A -> guest B", pair)
        out, err = pipeline.communicate(timeout=30)
    finally:
        if pipeline.poll() is None:
            os.killpg(pipeline.pid, 9)
            pipeline.wait()
    assert pipeline.returncode == 0, err
    assert_icmp_between_guests(out, pair)


def test_a_scrape_parses_and_matches_ctl_stats(pair: Topology):
    assert_all_answered(pair.a.ping(IP_B, 3, watch=pair.problem), 3, "guest A -> guest B", pair)
    pair.settled()
    with urllib.request.urlopen(pair.metrics_url, timeout=10) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4"), reply.headers
        metrics = parse_prometheus(reply.read().decode())
    stats = pair.stats()

    def value(name, **labels):
        key = (name, frozenset(labels.items()))
        assert key in metrics, f"no sample {name}{labels} in the scrape"
        return metrics[key]

    for port in stats["ports"]:
        for q in port["queues"]:
            labels = {"port": port["name"], "queue": str(q["queue"])}
            for field in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes"):
                assert value(f"ferry_port_{field}_total", **labels) == q[field], \
                    f"{field} of {labels}: metrics {value(f'ferry_port_{field}_total', **labels)}, " \
                    f"ctl stats {q[field]}"
            for reason, count in q["drops"].items():
                assert value("ferry_port_dropped_total", reason=reason, **labels) == count
            for kind, count in q["offloads"].items():
                assert value("ferry_port_offload_total", kind=kind, **labels) == count
        assert port["rx_packets"] > 0 and port["tx_packets"] > 0, port
    switch = stats["switch"]
    for decision in ("unicast", "flooded", "hairpin"):
        assert value("ferry_forwarding_decisions_total", decision=decision) == switch[decision]
    assert value("ferry_fdb_entries") == switch["fdb"]["entries"]
    assert value("ferry_fdb_learned_total") == switch["fdb"]["learned"]
    assert value("ferry_fdb_moves_total") == switch["fdb"]["moves"]
    # An idle worker still wakes every 100 ms and sleeps again: its counters only grow
    # between the scrape and the stats taken after it.
    for w in stats["workers"]:
        assert 0 < value("ferry_worker_sleeps_total", worker=str(w["id"])) <= w["sleeps"]
        assert value("ferry_worker_busy_loops_total", worker=str(w["id"])) <= w["busy_loops"]
    assert value("ferry_captures") == 0


def test_the_endpoint_refuses_other_paths(pair: Topology):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(pair.metrics_url.replace("/metrics", "/nope"), timeout=10)
    assert err.value.code == 404
