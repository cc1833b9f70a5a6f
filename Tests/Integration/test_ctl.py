"""`ferry ctl show ...` and `ferry ctl fdb add|del` against a running Ferry.

Run from the repository root, after `swift build -c release`:

    python3 -m pytest -v Tests/Integration/test_ctl.py

Only ports that need no peer: generators (a `gen` port emits `count` frames into its VLAN as
soon as Ferry starts, or `delay` ms later) and sinks (which count what they are sent in
tx_packets). The base switch is

    gen:...,src=02:00:00:00:00:01,dst=02:00:00:00:00:02,count=100,name=g   access 1
    sink:name=s                                                            access 1
    sink:name=u                                                            access 1
    sink:name=t,trunk=10,20                                                trunk 10,20

g's destination is unknown, so its frames flood to s and u (t carries other VLANs), and its
source is learned on g. The static-entry test adds a delayed second generator whose
destination is pinned to s: its frames must reach s only.

Every error is checked by its exact text (docs/CONTROL.md) on stderr, exit status 1.

Environment: FERRY_BIN (see harness.py). Needs no root, testpmd or QEMU; the tests fail (they
do not skip) when the Ferry binary is missing.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess

import pytest

import harness as h

GEN_SRC = "02:00:00:00:00:01"
GEN_DST = "02:00:00:00:00:02"
COUNT = 100
BASE_PORTS = [
    f"gen:dst={GEN_DST},src={GEN_SRC},size=64,count={COUNT},name=g",
    "sink:name=s",
    "sink:name=u",
    "sink:name=t,trunk=10,20",
]
PINNED = "02:00:00:00:00:99"      # the static entry's MAC
PINNED_SRC = "02:00:00:00:00:03"  # the second generator's source
# The second generator waits this long after Ferry starts, so the static entry is in before
# its first frame; the test checks that it was (rx_packets still 0 after `fdb add`).
PINNED_DELAY_MS = 3000


# --------------------------------------------------------------------------- fixtures


# Every test here runs the Ferry binary (conftest.py checks it once); `lab` is conftest.py's.
pytestmark = pytest.mark.usefixtures("ferry_binary")


@pytest.fixture
def ferry(lab):
    f = lab.ferry(BASE_PORTS)
    wait_learned(f, GEN_SRC)
    return f


# --------------------------------------------------------------------------- helpers


def ctl_json(ferry: h.Ferry, *args: str) -> dict:
    return json.loads(h.ctl_ok(ferry, *args, "--json"))


def raw_request(ferry: h.Ferry, line: bytes) -> dict:
    """One request line on the control socket, for what the CLI never sends."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(ferry.control)
        s.sendall(line + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    return json.loads(reply)


def fdb(ferry: h.Ferry) -> list[dict]:
    return ctl_json(ferry, "show", "fdb")["fdb"]


def entry(ferry: h.Ferry, mac: str, vlan: int = 1):
    return next((e for e in fdb(ferry) if e["mac"] == mac and e["vlan"] == vlan), None)


def wait_learned(ferry: h.Ferry, mac: str):
    h.wait_until(lambda: entry(ferry, mac), 10, f"{mac} in Ferry's forwarding database")


def tx(stats: dict) -> dict:
    return {p["name"]: p["tx_packets"] for p in stats["ports"]}


def table(text: str) -> tuple[str, list[str]]:
    lines = text.rstrip("\n").split("\n")
    for line in lines:
        assert line == line.rstrip(), f"trailing blanks in {line!r}"
    return lines[0], lines[1:]


# --------------------------------------------------------------------------- show ports


def test_show_ports(ferry):
    ports = ctl_json(ferry, "show", "ports")["ports"]
    assert [p["name"] for p in ports] == ["g", "s", "u", "t"]
    assert [p["index"] for p in ports] == [0, 1, 2, 3]
    assert [p["kind"] for p in ports] == ["gen", "sink", "sink", "sink"]
    assert [p["mode"] for p in ports] == ["access", "access", "access", "trunk"]
    assert [p["vlans"] for p in ports] == [[1], [1], [1], [10, 20]]
    assert [p["vlan"] for p in ports] == ["access 1", "access 1", "access 1", "trunk 10,20"]
    assert [p["queues"] for p in ports] == [1, 1, 1, 1]
    assert [p["spec"] for p in ports] == BASE_PORTS
    assert ports[1]["state"] == "running"
    h.wait_until(lambda: ctl_json(ferry, "show", "ports")["ports"][0]["state"] == "finished", 10,
                 "the generator to finish")

    header, rows = table(h.ctl_ok(ferry, "show", "ports"))
    assert header.split() == ["port", "index", "kind", "state", "vlan", "queues", "spec"]
    assert len(rows) == 4
    assert re.fullmatch(r"g +0  gen +finished +access 1 +1  " + re.escape(BASE_PORTS[0]), rows[0]), rows[0]
    assert re.fullmatch(r"t +3  sink +running +trunk 10,20 +1  sink:name=t,trunk=10,20", rows[3]), rows[3]
    # Left-aligned text columns start under their titles; numbers end under theirs.
    for title in ("kind", "state", "vlan", "spec"):
        assert {row[header.index(title) - 2:header.index(title)] for row in rows} == {"  "}, title
    for title in ("index", "queues"):
        end = header.index(title) + len(title)
        assert all(row[end - 1].isdigit() and row[end] == " " for row in rows), title


# --------------------------------------------------------------------------- show fdb


def test_show_fdb_lists_the_learned_source(ferry):
    reply = ctl_json(ferry, "show", "fdb")
    learned = [e for e in reply["fdb"] if e["mac"] == GEN_SRC]
    assert len(learned) == 1, reply
    e = learned[0]
    assert (e["vlan"], e["port"], e["static"]) == (1, "g", False), e
    assert isinstance(e["age"], int) and 0 <= e["age"] < 300, e
    counters = reply["counters"]
    assert set(counters) == {"entries", "learned", "moves", "overflows", "aged", "capacity", "aging_time"}
    assert counters["entries"] == len(reply["fdb"]) >= 1
    assert counters["learned"] >= 1
    assert (counters["capacity"], counters["aging_time"]) == (65536, 300)

    header, rows = table(h.ctl_ok(ferry, "show", "fdb"))
    assert header.split() == ["port", "vlan", "mac", "type", "age"]
    assert any(re.fullmatch(rf"g +1  {GEN_SRC}  learned +\d+", r) for r in rows), rows

    # Filters: by port and VLAN, in the table and in JSON.
    assert [e["mac"] for e in ctl_json(ferry, "show", "fdb", "--port", "g")["fdb"]] == [GEN_SRC]
    assert ctl_json(ferry, "show", "fdb", "--port", "s")["fdb"] == []
    assert ctl_json(ferry, "show", "fdb", "--vlan", "10")["fdb"] == []
    _, rows = table(h.ctl_ok(ferry, "show", "fdb", "--vlan", "10"))
    assert rows == []


# --------------------------------------------------------------------------- static entries


def test_static_entry_steers_traffic_to_its_port(lab):
    ports = BASE_PORTS + [f"gen:dst={PINNED},src={PINNED_SRC},size=64,count={COUNT},"
                          f"delay={PINNED_DELAY_MS},name=g2"]
    ferry = lab.ferry(ports)
    h.ctl_ok(ferry, "fdb", "add", PINNED, "--port", "s")
    assert h.port_stats(ferry.stats(), "g2")["rx_packets"] == 0, \
        f"g2 started before the static entry was added: raise PINNED_DELAY_MS ({PINNED_DELAY_MS})"

    e = entry(ferry, PINNED)
    assert e == {"mac": PINNED, "vlan": 1, "port": "s", "static": True, "age": 0}, e
    _, rows = table(h.ctl_ok(ferry, "show", "fdb"))
    assert any(re.fullmatch(rf"s +1  {PINNED}  static +-", r) for r in rows), rows

    # g's frames to an unknown MAC flood to every other port in VLAN 1 (s, u and g2, which
    # counts what it is sent); that is the baseline.
    h.wait_until(lambda: tx(ferry.stats())["u"] == COUNT, 10, f"g's {COUNT} frames flooded to u")
    before = h.wait_stable(lambda: tx(ferry.stats()), quiet=0.5, timeout=10)
    assert before == {"g": 0, "s": COUNT, "u": COUNT, "t": 0, "g2": COUNT}, before

    # g2's frames go to the static entry's port only.
    h.wait_until(lambda: ferry.port("g2")["rx_packets"] == COUNT, 15, f"g2 to send {COUNT} frames")
    after = h.wait_stable(lambda: tx(ferry.stats()), quiet=0.5, timeout=10)
    assert after == {"g": 0, "s": 2 * COUNT, "u": COUNT, "t": 0, "g2": COUNT}, \
        f"frames to {PINNED} (static on s) went elsewhere: before {before}, after {after}"
    assert entry(ferry, PINNED)["port"] == "s", "learning moved a static entry"

    h.ctl_ok(ferry, "fdb", "del", PINNED)
    assert entry(ferry, PINNED) is None
    assert h.ctl_error(ferry, "fdb", "del", PINNED) == f"no entry for {PINNED} in vlan 1"


def test_static_entry_on_a_trunk_names_its_vlan(ferry):
    h.ctl_ok(ferry, "fdb", "add", PINNED, "--port", "t", "--vlan", "20")
    assert entry(ferry, PINNED, vlan=20) == {"mac": PINNED, "vlan": 20, "port": "t", "static": True, "age": 0}
    assert entry(ferry, PINNED, vlan=1) is None
    assert [e["mac"] for e in ctl_json(ferry, "show", "fdb", "--vlan", "20", "--port", "t")["fdb"]] == [PINNED]
    # The default VLAN of `fdb del` is 1, where there is no such entry.
    assert h.ctl_error(ferry, "fdb", "del", PINNED) == f"no entry for {PINNED} in vlan 1"
    h.ctl_ok(ferry, "fdb", "del", PINNED, "--vlan", "20")
    assert entry(ferry, PINNED, vlan=20) is None


def test_static_entry_on_a_native_trunk_defaults_to_its_native_vlan(ferry):
    # As a config file's `fdb:` entry: without --vlan, the VLAN the port's untagged frames enter.
    h.ctl_ok(ferry, "port", "add", "sink:name=n,trunk=10,20,native=20")
    h.ctl_ok(ferry, "fdb", "add", PINNED, "--port", "n")
    assert entry(ferry, PINNED, vlan=20) == {"mac": PINNED, "vlan": 20, "port": "n", "static": True, "age": 0}
    assert entry(ferry, PINNED, vlan=1) is None
    h.ctl_ok(ferry, "fdb", "del", PINNED, "--vlan", "20")
    h.ctl_ok(ferry, "port", "del", "n")


def test_static_entry_replaces_a_learned_one(ferry):
    h.ctl_ok(ferry, "fdb", "add", GEN_SRC, "--port", "u")
    assert entry(ferry, GEN_SRC) == {"mac": GEN_SRC, "vlan": 1, "port": "u", "static": True, "age": 0}
    # Upper case and dashes are the same address.
    h.ctl_ok(ferry, "fdb", "del", GEN_SRC.upper().replace(":", "-"))
    assert entry(ferry, GEN_SRC) is None


# --------------------------------------------------------------------------- errors


ERRORS = [
    (["fdb", "add", "02:00:00:00:00", "--port", "s"],
     "'02:00:00:00:00' is not a MAC address (want aa:bb:cc:dd:ee:ff)"),
    (["fdb", "add", "02:00:00:00:00:zz", "--port", "s"],
     "'02:00:00:00:00:zz' is not a MAC address (want aa:bb:cc:dd:ee:ff)"),
    (["fdb", "add", "01:00:5e:00:00:01", "--port", "s"],
     "01:00:5e:00:00:01 is a group address; a static entry needs a unicast address"),
    (["fdb", "add", "ff:ff:ff:ff:ff:ff", "--port", "s"],
     "ff:ff:ff:ff:ff:ff is a group address; a static entry needs a unicast address"),
    (["fdb", "add", "00:00:00:00:00:00", "--port", "s"],
     "00:00:00:00:00:00 is the null address; a static entry needs a unicast address"),
    (["fdb", "add", PINNED, "--port", "nope"], "no port is named 'nope'"),
    (["fdb", "add", PINNED, "--port", "s", "--vlan", "0"], "vlan 0 is not 1...4094"),
    (["fdb", "add", PINNED, "--port", "s", "--vlan", "4095"], "vlan 4095 is not 1...4094"),
    (["fdb", "add", PINNED, "--port", "s", "--vlan", "10"], "port 's' does not carry vlan 10 (it is access 1)"),
    (["fdb", "add", PINNED, "--port", "t", "--vlan", "30"],
     "port 't' does not carry vlan 30 (it is trunk 10,20)"),
    (["fdb", "add", PINNED, "--port", "t"], "port 't' is a trunk (trunk 10,20) with no native VLAN: give a vlan"),
    (["fdb", "del", PINNED], f"no entry for {PINNED} in vlan 1"),
    (["fdb", "del", GEN_SRC, "--vlan", "10"], f"no entry for {GEN_SRC} in vlan 10"),
    (["fdb", "del", "nonsense"], "'nonsense' is not a MAC address (want aa:bb:cc:dd:ee:ff)"),
    (["fdb", "del", PINNED, "--vlan", "5000"], "vlan 5000 is not 1...4094"),
]


def test_errors_from_the_cli(ferry):
    def keys():
        return [(e["mac"], e["vlan"], e["port"], e["static"]) for e in fdb(ferry)]
    before = keys()
    for args, message in ERRORS:
        assert h.ctl_error(ferry, *args) == message, args
    assert keys() == before, "a refused request changed the forwarding database"


def test_errors_from_the_socket(ferry):
    cases = [
        (b'{"cmd":"show"}', "request has no \"what\" (one of: ports, fdb, stats, vteps)"),
        (b'{"cmd":"show","what":"routes"}', "cannot show 'routes' (one of: ports, fdb, stats, vteps)"),
        (b'{"cmd":"flush"}', "unknown command 'flush' (one of: hello, stats, stats-clear, show, fdb-add, fdb-del, fdb-flush, port, capture)"),
        (b'{"what":"fdb"}', "request has no \"cmd\""),
        (b'[1,2]', "request is not a JSON object"),
        (b'{"cmd":"fdb-add","port":"s"}', "request has no \"mac\""),
        (b'{"cmd":"fdb-add","mac":"02:00:00:00:00:99"}', "request has no \"port\""),
        (b'{"cmd":"fdb-add","mac":5,"port":"s"}', "\"mac\" must be a string"),
        (b'{"cmd":"fdb-add","mac":"02:00:00:00:00:99","port":"s","vlan":true}',
         "\"vlan\" must be a whole number 1...4094"),
        (b'{"cmd":"fdb-add","mac":"02:00:00:00:00:99","port":"s","vlan":"1"}',
         "\"vlan\" must be a whole number 1...4094"),
        (b'{"cmd":"fdb-add","mac":"02:00:00:00:00:99","port":"s","vlan":1.5}',
         "\"vlan\" must be a whole number 1...4094"),
    ]
    for line, message in cases:
        assert raw_request(ferry, line) == {"error": message}, line
    assert raw_request(ferry, b'{"cmd":"fdb-add","mac":"02:00:00:00:00:99","port":"s","vlan":1}') == {"ok": True}
    assert raw_request(ferry, b'{"cmd":"fdb-del","mac":"02:00:00:00:00:99"}') == {"ok": True}
    assert set(raw_request(ferry, b'{"cmd":"show","what":"stats"}')) == {"ports", "workers", "switch", "elapsed",
                                                                          "cleared"}


def test_a_full_table_refuses_a_static_entry(lab):
    ferry = lab.ferry(BASE_PORTS, extra_args=["--fdb-capacity", "1"])
    wait_learned(ferry, GEN_SRC)
    overflows = ctl_json(ferry, "show", "fdb")["counters"]["overflows"]
    assert h.ctl_error(ferry, "fdb", "add", PINNED, "--port", "s") == "the forwarding database is full (capacity 1)"
    counters = ctl_json(ferry, "show", "fdb")["counters"]
    assert (counters["entries"], counters["capacity"]) == (1, 1)
    assert counters["overflows"] == overflows + 1
    # Replacing the one entry needs no room.
    h.ctl_ok(ferry, "fdb", "add", GEN_SRC, "--port", "s")
    assert entry(ferry, GEN_SRC)["static"] is True


def test_unreachable_ferry(lab):
    missing = lab.path("nobody.sock")
    res = subprocess.run([h.ferry_binary(), "ctl", "show", "ports", "--control", missing],
                         capture_output=True, text=True, timeout=10)
    # 69 (EX_UNAVAILABLE), not 1: nothing answered, so nothing was refused (docs/OPERATIONS.md).
    assert res.returncode == 69
    assert res.stderr.startswith(f"Error: cannot reach Ferry at {missing}: "), res.stderr


# --------------------------------------------------------------------------- stats


def test_show_stats_is_ctl_stats(ferry):
    h.wait_until(lambda: h.port_stats(ctl_json(ferry, "stats"), "u")["tx_packets"] == COUNT, 10,
                 "g's frames flooded to u")
    a, b = ctl_json(ferry, "stats"), ctl_json(ferry, "show", "stats")
    assert [(p["name"], p["tx_packets"]) for p in a["ports"]] == [(p["name"], p["tx_packets"]) for p in b["ports"]]
    for args in (["stats"], ["show", "stats"]):
        header, rows = table(h.ctl_ok(ferry, *args))
        assert header.split() == ["port", "kind", "state", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes",
                                  "rx_pps", "rx_bps", "tx_pps", "tx_bps", "drops_pps", "drops"]
        # The rates are "-" until Ferry has sampled the port twice, then 0 for a quiet port.
        assert re.fullmatch(rf"u +sink +running +0 +0 +{COUNT} +{COUNT * 64}( +(-|0)){{5}}  -", rows[2]), rows
