"""Two QEMU guests on two Ferry vhost-user ports, cross-connected: guest A pings guest B.

Run as root from the repository root, after `swift build -c release`:

    python3 -m pytest -v Tests/Integration/test_qemu_guests.py

What runs (per case, 12-20 s under TCG on 2 cores, depending on load):

* Ferry with two server-mode vhost-user ports, `a` and `b`, cross-connected;
* guest B (tools/run-test-guest.sh; 198.18.0.2/24) boots first and stays up as the ping target;
* once B reports FERRY-GUEST-READY, guest A (198.18.0.1/24) boots and pings B `ferry.count`
  times with payload `ferry.size`, and reports FERRY-PING-RESULT on its serial console.

Checked: all pings answered; both guests got the MTU asked for; Ferry counted the traffic on
both ports (what one port took the other was handed), frames big enough to prove the ping was
not fragmented, no drops of any reason, no "device broken" line.

Both guests boot with `ipv6.disable=1`: otherwise B's IPv6 link-up chatter (MLD, router and
neighbour solicitations) would reach port `a` before A's driver is up, and be counted as
`not_ready` drops that have nothing to do with the ping.

Environment: FERRY_BIN (Ferry binary), FERRY_QEMU (QEMU binary, used by run-test-guest.sh),
FERRY_GUEST_DIR (guest kernel + initrd). The tests fail (they do not skip) when root, QEMU, the
guest build prerequisites or the Ferry binary are missing.
"""

from __future__ import annotations

import os
import re
import time
from typing import Optional

import pytest

import harness as h
import qemu_guest as qg


IP_A, IP_B = "198.18.0.1", "198.18.0.2"
MAC_A, MAC_B = "52:54:00:18:00:01", "52:54:00:18:00:02"
PING_COUNT = 5
BOOT_TIMEOUT = 40.0      # B: QEMU start to FERRY-GUEST-READY (normally ~4 s)
PING_TIMEOUT = 60.0      # A: QEMU start to FERRY-PING-RESULT (normally ~8 s)
QEMU_TIMEOUT = 150       # run-test-guest.sh --timeout: QEMU is killed after this in any case
# No IPv6 in the guests: see the module docstring. Guest B then sends nothing until A asks.
GUEST_EXTRA = "ipv6.disable=1"

_READY = re.compile(r"FERRY-GUEST-READY ip=(\S+) mtu=(\d+)")
_RESULT = re.compile(r"FERRY-PING-RESULT target=(\S+) size=(\d+) transmitted=(\d+) received=(\d+)")
_COUNTERS = re.compile(r"eth0 counters:.*\brx_packets=(\d+).*\btx_packets=(\d+)")


# --------------------------------------------------------------------------- one guest


class Guest(qg.GuestProcess):
    """A test guest told what to do on its kernel command line (ferry.ip, ferry.ping, ...)."""

    def __init__(self, name: str, mac: str, socket_path: str, append: str, log: str,
                 mtu: Optional[int] = None, unshared_memory: bool = False, device_options: str = ""):
        cmd = [str(qg.RUN_GUEST), "--name", name, "--mac", mac, "--vhost-socket", socket_path,
               "--append", append, "--log", log, "--timeout", str(QEMU_TIMEOUT)]
        if mtu:
            cmd += ["--mtu", str(mtu)]
        if device_options:
            cmd += ["--device-options", device_options]
        if unshared_memory:
            cmd += ["--unshared-memory"]
        super().__init__(name, log, cmd)


@pytest.fixture
def lab(lab):
    """conftest.py's lab, which also holds the guests a test starts: they stop first and
    their logs are kept; then conftest.py's lab stops Ferry (removing its sockets) and
    removes the work directory."""
    guests: list[Guest] = []
    lab.guests = guests
    try:
        yield lab
    finally:
        qg.stop_keeping_logs(guests, lab.keep_logs)


# --------------------------------------------------------------------------- the test


def broken_lines(ferry: h.Ferry) -> list[str]:
    return [l for l in ferry.log_text().splitlines() if "device broken" in l]


@pytest.mark.parametrize("mtu,size,packed", [(1500, 1472, False), (9000, 8000, False), (1500, 1472, True),
                                             (9000, 8000, True)],
                         ids=["mtu1500", "mtu9000", "packed", "packed_mtu9000"])
def test_guest_pings_guest_through_ferry(guest_machine, lab, mtu, size, packed):
    """packed: guest A's virtio-net-pci has packed=on (VIRTIO_F_RING_PACKED), guest B keeps
    split rings: every ping crosses from one ring layout to the other and back.
    packed_mtu9000: the same with 8042-byte frames, larger than any one receive buffer of
    guest A's packed ring: each goes the per-chain way, over several buffers."""
    sock_a, sock_b = lab.path("a.sock"), lab.path("b.sock")
    ferry = lab.ferry([f"vhost:{sock_a},name=a", f"vhost:{sock_b},name=b"])
    h.wait_for_socket(sock_a, proc=ferry)
    h.wait_for_socket(sock_b, proc=ferry)

    def ferry_problem() -> Optional[str]:
        """A Ferry that died or a port marked broken ends the wait at once, with the reason."""
        if ferry.exited():
            hint = ""
            log = ferry.log_text()
            if "signal 15: stopping" in log or "signal 2: stopping" in log:
                hint = (" - it logged a stop signal, which this test had not sent: another "
                        "process on this machine signalled it")
            return f"Ferry exited ({ferry.returncode()}){hint}\n{ferry.log_tail()}"
        try:
            stats = ferry.stats()
        except Exception as exc:
            return f"ferry ctl stats failed: {exc}"
        broken = [f"port {p['name']}: {p['state']}" for p in stats.get("ports", [])
                  if str(p.get("state", "")).startswith("broken")]
        if broken:
            return ("Ferry marked a port broken:\n  " + "\n  ".join(broken)
                    + f"\nFerry stats: {stats}\n{ferry.log_tail(30)}")
        return None

    common = f"ferry.mtu={mtu} {GUEST_EXTRA}"
    guest_mtu = mtu if mtu != 1500 else None  # 1500: no host_mtu, the guest's default
    b = Guest("ferry-b", MAC_B, sock_b, f"ferry.ip={IP_B}/24 {common}",
              lab.path("guest-b.log"), mtu=guest_mtu)
    lab.guests.append(b)
    b.start()
    ready_b, _ = b.wait_for(_READY, BOOT_TIMEOUT, ferry_problem)

    a = Guest("ferry-a", MAC_A, sock_a,
              f"ferry.ip={IP_A}/24 ferry.ping={IP_B} ferry.count={PING_COUNT} "
              f"ferry.size={size} {common}", lab.path("guest-a.log"), mtu=guest_mtu,
              device_options="packed=on" if packed else "")
    lab.guests.append(a)
    a.start()
    ready_a, _ = a.wait_for(_READY, BOOT_TIMEOUT, ferry_problem)
    result, _ = a.wait_for(_RESULT, PING_TIMEOUT, ferry_problem)

    def ctx() -> str:
        try:
            stats = ferry.stats()
        except Exception as exc:
            stats = f"<stats unavailable: {exc}>"
        return f"Ferry stats: {stats}\n{ferry.log_tail(30)}\n{a.describe()}\n{b.describe(15)}"

    for name, ready in (("B", ready_b), ("A", ready_a)):
        assert int(ready.group(2)) == mtu, \
            f"guest {name} has MTU {ready.group(2)}, wanted {mtu}\n{ctx()}"
    # QEMU may set the features more than once; every time, each port in its own layout.
    layouts = {port: set(re.findall(rf"vhost-user {port}: features .*, (packed|split) rings\)",
                                    ferry.log_text())) for port in ("a", "b")}
    assert layouts == {"a": {"packed" if packed else "split"}, "b": {"split"}}, \
        f"ring layouts negotiated: {layouts}\n{ctx()}"

    target, rsize, sent, received = result.group(1), int(result.group(2)), \
        int(result.group(3)), int(result.group(4))
    assert (target, rsize) == (IP_B, size), f"unexpected result line {result.group(0)!r}\n{ctx()}"
    assert (sent, received) == (PING_COUNT, PING_COUNT), \
        f"guest A: {received} of {sent} pings answered, wanted {PING_COUNT} of {PING_COUNT}" \
        f"\n{ctx()}"
    assert not ferry.exited(), f"Ferry exited during the test\n{ctx()}"

    # Counters: wait until nothing is in flight (a frame is counted rx on one port a moment
    # before it is counted tx on the other), reading both ports from one snapshot: a guest may
    # still send a late frame (a neighbour probe) between two separate reads. A frame Ferry
    # lost without counting it would keep them apart, and the wait would time out.
    def reconciled():
        stats = ferry.stats()
        a_, b_ = h.port_stats(stats, "a"), h.port_stats(stats, "b")
        balanced = (a_["rx_packets"], a_["rx_bytes"]) == (b_["tx_packets"], b_["tx_bytes"]) \
            and (b_["rx_packets"], b_["rx_bytes"]) == (a_["tx_packets"], a_["tx_bytes"])
        return (a_, b_) if balanced else None
    try:
        pa, pb = h.wait_until(reconciled, timeout=10, desc="a's and b's counters to reconcile")
    except TimeoutError:
        pa, pb = ferry.port("a"), ferry.port("b")
    summary = f"a={pa}\nb={pb}"
    for p in (pa, pb):
        assert p["state"] == "running", f"port {p['name']} is {p['state']!r}\n{summary}\n{ctx()}"
        assert h.drop_total(p, exclude=()) == 0, \
            f"port {p['name']} dropped frames: {p['drops']}\n{ctx()}"
    assert pa["rx_packets"] >= PING_COUNT and pb["rx_packets"] >= PING_COUNT, \
        f"Ferry saw fewer than {PING_COUNT} frames on a port\n{ctx()}"
    assert pa["rx_packets"] == pb["tx_packets"] and pa["rx_bytes"] == pb["tx_bytes"], \
        f"what Ferry took from a is not what it handed to b\n{ctx()}"
    assert pb["rx_packets"] == pa["tx_packets"] and pb["rx_bytes"] == pa["tx_bytes"], \
        f"what Ferry took from b is not what it handed to a\n{ctx()}"
    # Each echo is one Ethernet frame of 14 + 20 + 8 + size bytes. The guests' MTU (checked
    # above, from sysfs) is at least that, so they did not fragment: the bytes show the frames
    # of full size crossed Ferry both ways.
    frame = 14 + 28 + size
    for p in (pa, pb):
        assert p["rx_bytes"] >= PING_COUNT * frame, \
            f"port {p['name']}: {p['rx_bytes']} bytes < {PING_COUNT} x {frame}-byte frames\n{ctx()}"
    # The guest's own counters (printed just before the result) are a lower bound for Ferry's.
    gc = _COUNTERS.search(a.console())
    assert gc, f"guest A printed no eth0 counters\n{ctx()}"
    guest_rx, guest_tx = int(gc.group(1)), int(gc.group(2))
    assert pa["rx_packets"] >= guest_tx, \
        f"guest A sent {guest_tx} frames, Ferry took only {pa['rx_packets']} from port a\n{ctx()}"
    assert pa["tx_packets"] >= guest_rx, \
        f"guest A received {guest_rx} frames, Ferry handed port a only {pa['tx_packets']}\n{ctx()}"
    assert not broken_lines(ferry), f"Ferry marked a device broken:\n{broken_lines(ferry)}\n{ctx()}"

    for g in (a, b):
        g.stop()
    rc = ferry.stop()
    assert rc == 0, f"Ferry exited with {rc} on SIGINT\n{ferry.log_tail()}"


def test_guest_without_shared_memory_is_named(guest_machine, lab):
    """QEMU with share=off maps guest RAM privately: the guest boots and its driver kicks, but
    Ferry's view of the rings never changes. Ferry must say so, not forward nothing in silence."""
    sock = lab.path("u.sock")
    ferry = lab.ferry([f"vhost:{sock},name=u", "sink"])
    h.wait_for_socket(sock, proc=ferry)
    g = Guest("ferry-u", MAC_A, sock, f"ferry.ip={IP_A}/24 {GUEST_EXTRA}", lab.path("guest-u.log"),
              unshared_memory=True)
    lab.guests.append(g)
    g.start()
    g.wait_for(_READY, BOOT_TIMEOUT)
    deadline = time.monotonic() + 20
    state = ""
    while time.monotonic() < deadline:
        state = str(ferry.port("u")["state"])
        if state.startswith("broken"):
            break
        time.sleep(0.5)
    assert state.startswith("broken") and "share=on" in state, \
        f"port u is {state!r}; wanted broken with a share=on hint\n{ferry.log_tail(30)}"
    assert len(broken_lines(ferry)) == 1, f"one log line per broken device:\n{broken_lines(ferry)}"
    g.stop()
    assert ferry.stop() == 0, f"Ferry exited badly\n{ferry.log_tail()}"
