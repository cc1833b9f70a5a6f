"""No front-end can stop Ferry: wrong descriptors and guest memory that shrinks.

Run as root from the repository root, after `swift build -c release`:

    python3 -m pytest -v Tests/Integration/test_untrusted_frontend.py

One Ferry, five ports on two VLANs:

    vhost:.../hostile.sock,name=hostile  +  sink:name=hsink        (VLAN 10)
    vhost:.../a.sock,name=a              +  vhost:.../b.sock,name=b (VLAN 20)

A dpdk-testpmd pair forwards through `a` (txonly) to `b` (rxonly) the whole time. A Python
front-end (vhost_frontend.py) attaches to `hostile` and hands over, as kick, call and err:
a pipe with a byte in it, a socket with a byte in it, a regular file, and an eventfd created
without EFD_NONBLOCK whose counter is 0 (a plain read of any of the first three returns data;
of the last, never). Ferry must refuse each wrong one with a failing REPLY_ACK and one log line
naming what it got, accept the blocking eventfd and start a ring on it without waiting, and
then, when the front-end truncates its guest-memory file under the running rings, break only
that device (one "device broken" line naming the shrunken memory) instead of dying of SIGBUS.

Throughout: `ferry ctl` answers; afterwards a new front-end attaches to `hostile` and its
frames are counted; the testpmd pair's counts reconcile exactly (what testpmd A sent = what
Ferry took from `a` + its counted drops; what Ferry gave `b` = what testpmd B received); and
SIGTERM stops Ferry with exit code 0.

Environment: FERRY_BIN, FERRY_TESTPMD (see harness.py). The test fails (it does not skip)
when root, dpdk-testpmd or the Ferry binary is missing.
"""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import time

import pytest

import harness as h
import vhost_frontend as vf

HOSTILE, HSINK, A, B = "hostile", "hsink", "a", "b"
REFUSED = f"vhost-user {HOSTILE}: "
BROKEN_LINE = f"vhost-user {HOSTILE}: device broken, forwarding stopped:"
NEW_FRAMES = 200


@pytest.fixture
def lab(testpmd_machine, lab):
    """conftest.py's lab, which also holds the Python front-ends a test opens: they close
    first, then conftest.py's lab stops testpmd and Ferry."""
    frontends: list[vf.VhostUserFrontend] = []
    lab.frontends = frontends
    try:
        yield lab
    finally:
        for fe in frontends:
            fe.close()


def wrong_descriptors(stack: list[int]) -> list[tuple[str, int]]:
    """A pipe, a socket and a regular file, each readable; their fds are kept in `stack`."""
    r, w = os.pipe()
    os.write(w, b"x")
    mine, theirs = socket.socketpair()
    theirs.send(b"x")
    fd, path = tempfile.mkstemp(prefix="ferry-uf-")
    os.write(fd, b"not an eventfd")
    os.unlink(path)
    stack += [r, w, mine.detach(), theirs.detach(), fd]
    return [("a pipe", r), ("a socket", stack[-3]), ("a regular file", fd)]


def test_wrong_descriptors_and_shrinking_memory_stop_only_their_device(lab):
    hostile_sock, a_sock, b_sock = lab.path("hostile.sock"), lab.path("a.sock"), lab.path("b.sock")
    ferry = lab.ferry([f"vhost:{hostile_sock},name={HOSTILE},vlan=10", f"sink:name={HSINK},vlan=10",
                       f"vhost:{a_sock},name={A},vlan=20", f"vhost:{b_sock},name={B},vlan=20"],
                      cpu=0)
    for path in (hostile_sock, a_sock, b_sock):
        h.wait_for_socket(path, proc=ferry)
    receiver = lab.virtio_user(b_sock, "rxonly", cpu=1, total_mbufs=8192).start()
    sender = lab.virtio_user(a_sock, "txonly", cpu=1, total_mbufs=8192, txpkts=64).start()

    def context() -> str:
        try:
            stats = ferry.stats()
        except Exception as exc:  # noqa: BLE001 - the context of a failure, whatever it is
            stats = f"<stats unavailable: {exc}>"
        return f"Ferry stats: {stats}\n{lab.logs(30)}"

    def alive(when: str):
        if ferry.exited():
            pytest.fail(f"Ferry died {when} (exit {ferry.returncode()})\n{ferry.log_tail(50)}",
                        pytrace=False)

    def port(name: str) -> dict:
        alive("(its control socket stopped answering)")
        return ferry.port(name)

    def wait(pred, desc: str, timeout: float = 10.0):
        def check():
            alive(f"while waiting for {desc}")
            return pred()
        try:
            return h.wait_until(check, timeout, desc, interval=0.05)
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{context()}", pytrace=False)

    def pair_moves(desc: str):
        b0 = port(B)["tx_packets"]
        wait(lambda: port(B)["tx_packets"] > b0, f"the testpmd pair to keep forwarding {desc}")

    def log_lines(text: str) -> list[str]:
        return [line for line in ferry.log_text().splitlines() if text in line]

    wait(lambda: port(B)["tx_packets"] > 0, "frames from testpmd a to reach testpmd b")

    fe = vf.VhostUserFrontend(hostile_sock)
    lab.frontends.append(fe)
    fe.connect()
    fe.setup()
    wait(lambda: port(HOSTILE)["state"] == "running", "the hostile port to run")

    # 1. Descriptors of the wrong kind: refused, one line each, the device unharmed.
    keep: list[int] = []
    try:
        for kind, fd in wrong_descriptors(keep):
            for request, role in ((vf.SET_VRING_KICK, "kick"), (vf.SET_VRING_CALL, "call"),
                                  (vf.SET_VRING_ERR, "err")):
                status = fe.hand_over(request, vf.TX_QUEUE, fd)
                alive(f"after {role} = {kind}")
                assert status != 0, f"Ferry accepted {kind} as a {role} descriptor\n{context()}"
                want = f"{role} descriptor for queue {vf.TX_QUEUE} is {kind}, not an eventfd"
                lines = wait(lambda: log_lines(want), f"the log line {want!r}", timeout=5)
                assert len(lines) == 1, f"expected one line {want!r}, got {lines}"
                assert ferry.ctl_text("show", "ports"), "ferry ctl show ports said nothing"
    finally:
        for fd in keep:
            os.close(fd)
    assert fe.get_status() == vf.STATUS_RUNNING, f"a refused descriptor changed the device\n{context()}"
    pair_moves("after the refusals")

    # 2. An eventfd without EFD_NONBLOCK and a zero counter: accepted as kick and call, the ring
    # restarts on it (Ferry drains a kick as its ring starts) and frames still flow.
    blocking_kick = os.eventfd(0, os.EFD_CLOEXEC)
    blocking_call = os.eventfd(0, os.EFD_CLOEXEC)
    try:
        assert fe.hand_over(vf.SET_VRING_CALL, vf.TX_QUEUE, blocking_call) == 0, \
            f"Ferry refused a blocking eventfd as call\n{context()}"
        started = time.monotonic()
        assert fe.restart_with_kick(vf.TX_QUEUE, blocking_kick) == 0, \
            f"Ferry refused a blocking eventfd as kick\n{context()}"
        assert time.monotonic() - started < 2, "starting a ring on a blocking kick took seconds"
        assert ferry.ctl_text("show", "ports"), "ferry ctl show ports said nothing"
        s0 = port(HSINK)["tx_packets"]
        fe.send_frames(10)
        assert fe.wait_consumed(timeout=5), f"Ferry stopped consuming after the blocking kick\n{context()}"
        wait(lambda: port(HSINK)["tx_packets"] >= s0 + 10, "10 frames over the blocking kick")
    finally:
        os.close(blocking_kick)
        os.close(blocking_call)
    assert not log_lines(BROKEN_LINE), f"the blocking eventfds broke the device\n{context()}"

    # 3. The guest-memory file shrinks under the running rings: that device breaks, Ferry lives.
    taken = port(HOSTILE)["rx_packets"]
    fe.shrink_memory(0)
    for _ in range(5):
        fe.kick(vf.TX_QUEUE)
        fe.kick(vf.RX_QUEUE)
        time.sleep(0.05)
    state = wait(lambda: (lambda s: s if s.startswith("broken: ") else None)(port(HOSTILE)["state"]),
                 "the hostile port to break after its memory shrank")
    assert "shrank" in state, f"broken reason {state!r} does not say the memory shrank\n{context()}"
    assert port(HOSTILE)["rx_packets"] == taken, "the shrunken device delivered frames"
    status = fe.get_status()
    assert status & vf.S_NEEDS_RESET, f"GET_STATUS 0x{status:x} lacks NEEDS_RESET\n{context()}"
    pair_moves("after the hostile memory shrank")
    fe.close()

    # 4. A new front-end attaches to the same socket and forwards.
    wait(lambda: port(HOSTILE)["state"] == "listening", "the hostile port to listen again")
    h0, s0 = port(HOSTILE)["rx_packets"], port(HSINK)["tx_packets"]
    fresh = vf.VhostUserFrontend(hostile_sock)
    lab.frontends.append(fresh)
    fresh.connect()
    fresh.setup()
    wait(lambda: port(HOSTILE)["state"] == "running", "the new front-end's device to run")
    assert fresh.get_status() == vf.STATUS_RUNNING
    fresh.send_frames(NEW_FRAMES, size=128)
    assert fresh.wait_consumed(timeout=10), f"Ferry left the new front-end's frames\n{context()}"
    wait(lambda: port(HSINK)["tx_packets"] >= s0 + NEW_FRAMES, "hsink to count the new frames")
    assert port(HOSTILE)["rx_packets"] - h0 == NEW_FRAMES
    fresh.close()

    broken = log_lines(BROKEN_LINE)
    assert len(broken) == 1 and "shrank" in broken[0], \
        f"expected one 'device broken' line naming the shrunken memory, got {broken}"

    # 5. The testpmd pair's counts reconcile exactly.
    pair_moves("at the end")
    sent = sender.stop().get("TX-packets")
    assert sent, f"testpmd a reports no TX-packets\n{sender.log_tail()}"
    a = h.wait_stable(lambda: port(A), quiet=0.5, timeout=15, desc="port a to settle")
    assert sent == a["rx_packets"] + h.drop_total(a), \
        f"testpmd a sent {sent}, Ferry took {a['rx_packets']} and dropped {a.get('drops')}\n{context()}"
    b = h.wait_stable(lambda: port(B), quiet=0.5, timeout=15, desc="port b to settle")
    received = receiver.stop().get("RX-packets")
    assert received == b["tx_packets"], \
        f"Ferry gave b {b['tx_packets']} frames, testpmd b received {received}\n{context()}"
    assert a["rx_packets"] == b["tx_packets"] + h.drop_total(b), \
        f"a took {a['rx_packets']}, b was given {b['tx_packets']} and dropped {b.get('drops')}"

    # 6. SIGTERM stops Ferry cleanly.
    rc = ferry.stop(sig=signal.SIGTERM)
    assert rc == 0, f"Ferry exited with {rc} on SIGTERM\n{ferry.log_tail(40)}"
