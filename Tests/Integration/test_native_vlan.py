"""A trunk's native VLAN (`trunk=10,20,native=10`) with real tagged and untagged frames.

Run as root from the repository root, after `swift build --product ferry -c release`:

    python3 -m pytest -v Tests/Integration/test_native_vlan.py

Topology: Ferry with three TAP ports, each moved into a namespace of its own (IPv6 off):
`n` a trunk of VLANs 10 and 20 with native 10, `a` an access port of VLAN 10, `t` a trunk of
10 and 20 without a native VLAN. raw_frames.py listens on all three while each sends
broadcasts, untagged or tagged, each from a source MAC of its own; what every port received,
and with which tag, is compared with what a Linux bridge with `pvid 10 untagged` on `n` would
deliver. ~8 s.
"""

from __future__ import annotations

import itertools
import os
import sys

import harness as h

FRAMES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "raw_frames.py")
LISTEN_SECONDS = 5
_taps = itertools.count()

# (sending port, source MAC, what raw_frames.py sends): untagged, or @VLAN for tagged.
SENT = [
    ("n", "02:00:00:18:0a:01", "broadcast"),      # untagged on the trunk: its native VLAN 10
    ("n", "02:00:00:18:0a:02", "broadcast@20"),
    ("n", "02:00:00:18:0a:03", "broadcast@10"),   # tagged with the native id: taken as VLAN 10
    ("t", "02:00:00:18:0a:04", "broadcast@10"),
    ("t", "02:00:00:18:0a:05", "broadcast@20"),
    ("t", "02:00:00:18:0a:06", "broadcast"),      # untagged on a trunk without native: dropped
    ("a", "02:00:00:18:0a:07", "broadcast"),
]
# Per receiving port: {source MAC: VLAN on the wire ("-" untagged)}.
EXPECTED = {
    "n": {"02:00:00:18:0a:04": "-", "02:00:00:18:0a:05": "20", "02:00:00:18:0a:07": "-"},
    "a": {"02:00:00:18:0a:01": "-", "02:00:00:18:0a:03": "-", "02:00:00:18:0a:04": "-"},
    "t": {"02:00:00:18:0a:01": "10", "02:00:00:18:0a:02": "20", "02:00:00:18:0a:03": "10",
          "02:00:00:18:0a:07": "10"},
}


def test_a_native_vlan_is_untagged_both_ways(namespaces, lab, ferry_binary):
    n = next(_taps)
    taps = {port: f"nv{port}{os.getpid() % 100000}{n}" for port in ("n", "a", "t")}
    ferry = lab.ferry([f"tap:{taps['n']},name=n,trunk=10,20,native=10", f"tap:{taps['a']},name=a,vlan=10",
                       f"tap:{taps['t']},name=t,trunk=10,20"], cpu=0)
    spaces = {}
    for port, tap in taps.items():
        spaces[port] = namespaces(f"nv{port}")
        spaces[port].adopt(tap)
    logs = {port: lab.path(f"listen-{port}.log") for port in taps}
    listeners = {port: spaces[port].popen([sys.executable, FRAMES, "listen", taps[port], str(LISTEN_SECONDS)],
                                          logs[port]) for port in taps}
    try:
        h.wait_until(lambda: all("listening" in open(logs[p]).read() or listeners[p].poll() is not None
                                 for p in taps), 10, "the listeners to bind")
        # A TAP says something as it comes up in the root namespace (IPv6), before it moves:
        # on trunk t that is dropped too, so count from here.
        filtered_before = filtered(ferry.stats())
        for port, source, what in SENT:
            res = spaces[port].exec([sys.executable, FRAMES, "send", taps[port], source, what])
            assert res.stdout.strip() == "sent 1", res.stdout + res.stderr
        for p in listeners.values():
            p.wait(LISTEN_SECONDS + 10)
    finally:
        for p in listeners.values():
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait(10)
    received = {}
    for port in taps:
        lines = open(logs[port]).read().splitlines()[1:]
        received[port] = {f[3]: f[2] for f in (line.split() for line in lines) if len(f) == 4
                          and f[3].startswith("02:00:00:18:0a:")}
    stats = ferry.stats()
    assert received == EXPECTED, \
        f"received per port (source: VLAN): {received}\nexpected: {EXPECTED}\n" \
        f"drops: { {p: h.port_stats(stats, p).get('drops') for p in taps} }\n{lab.logs()}"
    assert filtered(stats) - filtered_before == 1, f"only t's untagged frame: {h.port_stats(stats, 't')}"


def filtered(stats: dict) -> int:
    return int((h.port_stats(stats, "t").get("drops") or {}).get("vlan_filtered", 0))
