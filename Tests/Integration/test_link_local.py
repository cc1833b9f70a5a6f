"""IEEE 802.1D link-local group addresses (01:80:C2:00:00:0X) as a Linux bridge with STP off
treats them: real STP, PAUSE, LACP, 802.1X and LLDP frames sent into one TAP port, and what
comes out of the other.

Run as root from the repository root, after `swift build --product ferry -c release`:

    python3 -m pytest -v Tests/Integration/test_link_local.py

Topology: Ferry with `tap:A,name=in[,group_fwd_mask=M]` and `tap:B,name=out`, each TAP moved
into a namespace of its own (IPv6 off: nothing else talks). raw_frames.py sends the
frames on A from inside its namespace and listens on B inside the other. A broadcast ARP
request goes last, so once it is out, everything before it that crossed has crossed. ~3 s
per case.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest

import harness as h

FRAMES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "raw_frames.py")
SOURCE = "02:00:00:18:17:01"
KINDS = ["bpdu", "pause", "lacp", "eapol", "lldp"]
ADDRESS = {"bpdu": "01:80:c2:00:00:00", "pause": "01:80:c2:00:00:01", "lacp": "01:80:c2:00:00:02",
           "eapol": "01:80:c2:00:00:03", "lldp": "01:80:c2:00:00:0e", "broadcast": "ff:ff:ff:ff:ff:ff"}
_taps = itertools.count()


def crossing(lab, namespaces, mask: str | None) -> tuple[set[str], dict]:
    """The kinds of frame that reach port `out` when each is sent into port `in` (whose
    group_fwd_mask is `mask`), and port `in`'s drops."""
    n = next(_taps)
    tap_in, tap_out = f"lli{os.getpid() % 100000}{n}", f"llo{os.getpid() % 100000}{n}"
    option = f",group_fwd_mask={mask}" if mask else ""
    ferry = lab.ferry([f"tap:{tap_in},name=in{option}", f"tap:{tap_out},name=out"], cpu=0)
    sender, receiver = namespaces("llin"), namespaces("llout")
    sender.adopt(tap_in)
    receiver.adopt(tap_out)
    listen_log = lab.path("listen.log")
    listener = receiver.popen([sys.executable, FRAMES, "listen", tap_out, "6"], listen_log)
    try:
        h.wait_until(lambda: "listening" in open(listen_log).read() or listener.poll() is not None, 10,
                     "the listener to bind")
        sent = sender.exec([sys.executable, FRAMES, "send", tap_in, SOURCE] + KINDS + ["broadcast"])
        assert sent.stdout.strip() == f"sent {len(KINDS) + 1}", sent.stdout + sent.stderr
        h.wait_until(lambda: ADDRESS["broadcast"] in open(listen_log).read() or listener.poll() is not None,
                     10, "the broadcast sent last to come out of port out")
    finally:
        if listener.poll() is None:
            os.killpg(listener.pid, 9)
        listener.wait(10)
    seen = {line.split()[0] for line in open(listen_log).read().splitlines()[1:] if line.strip()}
    crossed = {kind for kind, address in ADDRESS.items() if address in seen}
    assert "broadcast" in crossed, f"the control frame never crossed: {open(listen_log).read()}\n{lab.logs()}"
    drops = ferry.port("in").get("drops") or {}
    return crossed, drops


def test_only_bpdus_cross_by_default(namespaces, lab, ferry_binary):
    crossed, drops = crossing(lab, namespaces, None)
    assert crossed == {"bpdu", "broadcast"}, f"crossed: {sorted(crossed)}; drops on port in: {drops}"
    assert drops.get("link_local") == 4, f"PAUSE, LACP, 802.1X and LLDP each counted once: {drops}"


def test_group_fwd_mask_lets_lldp_through(namespaces, lab, ferry_binary):
    crossed, drops = crossing(lab, namespaces, "0x4000")
    assert crossed == {"bpdu", "lldp", "broadcast"}, f"crossed: {sorted(crossed)}; drops on port in: {drops}"
    assert drops.get("link_local") == 3, f"PAUSE, LACP and 802.1X each counted once: {drops}"


def test_group_fwd_mask_for_lacp_and_8021x_still_never_pause(namespaces, lab, ferry_binary):
    crossed, drops = crossing(lab, namespaces, "0xfffd")
    assert crossed == {"bpdu", "lacp", "eapol", "lldp", "broadcast"}, \
        f"crossed: {sorted(crossed)}; drops on port in: {drops}"
    assert drops.get("link_local") == 1, f"PAUSE counted: {drops}"


def test_the_pause_bit_is_refused(ferry_binary):
    res = subprocess.run([ferry_binary, "run", "--port", "sink:group_fwd_mask=0x0002"],
                         capture_output=True, text=True, timeout=20)
    assert res.returncode != 0 and "bit 1 (0x0002)" in res.stderr, res.stderr
