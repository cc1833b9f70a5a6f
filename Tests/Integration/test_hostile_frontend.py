"""A hostile vhost-user front-end must break only its own port, never Ferry or its neighbours.

Run as root from the repository root, after `swift build -c release`:

    python3 -m pytest -v Tests/Integration/test_hostile_frontend.py

Each test runs its own Ferry with four ports in two cross-connected pairs:

    vhost:.../hostile.sock,name=hostile  <->  sink:name=hsink
    vhost:.../good.sock,name=good        <->  sink:name=gsink

A well-behaved front-end (dpdk-testpmd, virtio-user, txonly) sends into `good` all the time;
a Python front-end (vhost_frontend.py) attaches to `hostile`, proves its ring works with one
valid frame, then does one bad thing.

Ring faults (descriptor outside guest memory, looping chain, avail index jump) and a ring size
that is no power of two must:
  * turn the hostile port's state into "broken: <reason naming the fault>",
  * produce exactly one "vhost-user hostile: device broken, forwarding stopped: ..." log line,
  * set NEEDS_RESET (0x40) in GET_STATUS, on the hostile connection,
  * leave Ferry running and the good port's sink counter rising, during and after;
and once the hostile front-end leaves, a new well-behaved Python front-end attaches to the same
socket and its frames are counted.

Protocol abuse (wrong payload size, garbage bytes, an oversized size field) must get an error
reply or a closed connection, never a crash; garbage and oversized sizes close the connection.

Environment: FERRY_BIN, FERRY_TESTPMD (see harness.py). The tests fail (they do not skip) when
root, dpdk-testpmd or the Ferry binary is missing.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import pytest

import harness as h
import vhost_frontend as vf

HOSTILE, HSINK, GOOD, GSINK = "hostile", "hsink", "good", "gsink"
BROKEN_LINE = f"vhost-user {HOSTILE}: device broken, forwarding stopped:"
RISE_TIMEOUT = 10.0
GOOD_FRAMES_AFTER = 200   # valid frames the new front-end sends after the hostile one left


# --------------------------------------------------------------------------- fixtures


class Rig:
    """Ferry + testpmd on the good port + the Python front-ends of one test."""

    def __init__(self, lab: h.Lab):
        self.lab = lab
        self.hostile_sock = lab.path("hostile.sock")
        self.good_sock = lab.path("good.sock")
        self.frontends: list[vf.VhostUserFrontend] = []
        self.ferry: Optional[h.Ferry] = None
        self.testpmd: Optional[h.Testpmd] = None

    def start(self):
        # Two VLANs keep the pairs apart, so each pair's counters reconcile on their own.
        self.ferry = self.lab.ferry([f"vhost:{self.hostile_sock},name={HOSTILE},vlan=10",
                                     f"sink:name={HSINK},vlan=10",
                                     f"vhost:{self.good_sock},name={GOOD},vlan=20",
                                     f"sink:name={GSINK},vlan=20"], cpu=0)
        h.wait_for_socket(self.hostile_sock, proc=self.ferry)
        h.wait_for_socket(self.good_sock, proc=self.ferry)
        self.testpmd = self.lab.virtio_user(self.good_sock, "txonly", cpu=1,
                                            total_mbufs=8192).start()
        self.wait_rise(GSINK, 0, "the good port's sink to count testpmd's frames")
        return self

    def frontend(self, **kw) -> vf.VhostUserFrontend:
        fe = vf.VhostUserFrontend(self.hostile_sock, **kw)
        self.frontends.append(fe)
        return fe.connect()

    def close(self):
        for fe in self.frontends:
            fe.close()

    # -- observation

    def stats(self) -> dict:
        try:
            return self.ferry.stats()
        except h.FerryError:
            # Most likely Ferry is gone or going: say so, with its log, rather than a ctl error.
            try:
                self.ferry.proc.wait(2)
            except Exception:
                pass
            self.check_alive("(its control socket stopped answering)")
            raise

    def port(self, name: str) -> dict:
        return h.port_stats(self.stats(), name)

    def context(self) -> str:
        try:
            stats = self.stats()
        except Exception as exc:
            stats = f"<stats unavailable: {exc}>"
        return f"Ferry stats: {stats}\n{self.lab.logs(30)}"

    def check_alive(self, when: str):
        if self.ferry.exited():
            log = self.ferry.log_text()
            hint = ""
            if "signal 15: stopping" in log or "signal 2: stopping" in log:
                hint = ("\nNOTE: Ferry logged that a signal stopped it, and this test sends none "
                        "before its end: another process on this machine signalled it.")
            pytest.fail(f"Ferry died {when} (exit {self.ferry.returncode()}){hint}\n"
                        f"{self.ferry.log_tail(50)}", pytrace=False)

    def wait(self, pred: Callable[[], object], timeout: float, desc: str):
        def check():
            self.check_alive(f"while waiting for {desc}")
            return pred()
        try:
            return h.wait_until(check, timeout, desc, interval=0.05)
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{self.context()}", pytrace=False)

    def wait_rise(self, name: str, above: int, desc: str, key: str = "tx_packets") -> int:
        return self.wait(lambda: (lambda v: v if v > above else 0)(self.port(name)[key]),
                         RISE_TIMEOUT, f"{desc} ({name}.{key} > {above})")

    def wait_state(self, pred: Callable[[str], bool], desc: str, timeout: float = 5.0) -> str:
        return self.wait(lambda: (lambda s: s if pred(s) else None)(self.port(HOSTILE)["state"]),
                         timeout, f"hostile port state {desc}")

    def broken_lines(self) -> list[str]:
        return [l for l in self.ferry.log_text().splitlines() if BROKEN_LINE in l]

    # -- the common parts of a scenario

    def attach_hostile(self) -> vf.VhostUserFrontend:
        """A front-end that sets up properly and proves its TX ring works with one frame."""
        fe = self.frontend()
        fe.setup()
        self.wait_state(lambda s: s == "running", "== 'running' after set-up")
        before = self.port(HSINK)["tx_packets"]
        fe.send_frame(vf.make_frame(64))
        assert fe.wait_consumed(timeout=5), \
            f"Ferry did not consume a valid frame from the fresh front-end\n{self.context()}"
        self.wait_rise(HSINK, before, "the valid frame before the fault to reach hsink")
        status = fe.get_status()
        assert status == vf.STATUS_RUNNING, \
            f"GET_STATUS of a healthy device is 0x{status:x}, expected 0x{vf.STATUS_RUNNING:x}"
        return fe

    def wait_listening(self):
        self.wait_state(lambda s: s == "listening", "== 'listening' after the front-end left")

    def good_frontend_works(self, good_before: int):
        """After the hostile front-end left: a new one attaches to the same socket, runs, its
        frames are counted; the good port kept moving; Ferry is alive."""
        self.wait_listening()
        h0 = self.port(HOSTILE)["rx_packets"]
        s0 = self.port(HSINK)["tx_packets"]
        fe = self.frontend()
        fe.setup()
        self.wait_state(lambda s: s == "running", "== 'running' for the new front-end")
        status = fe.get_status()
        assert status == vf.STATUS_RUNNING, \
            f"new front-end: GET_STATUS 0x{status:x}, expected 0x{vf.STATUS_RUNNING:x} " \
            f"(NEEDS_RESET left over from the hostile one?)\n{self.context()}"
        fe.send_frames(GOOD_FRAMES_AFTER, size=128)
        assert fe.wait_consumed(timeout=10), \
            f"new front-end: Ferry left frames in the TX ring (used idx {fe.used_idx(1)}, " \
            f"avail idx {fe.avail_idx[1]})\n{self.context()}"
        self.wait(lambda: self.port(HSINK)["tx_packets"] >= s0 + GOOD_FRAMES_AFTER, 5,
                  f"hsink to count the new front-end's {GOOD_FRAMES_AFTER} frames")
        hp, sp = self.port(HOSTILE), self.port(HSINK)
        assert hp["rx_packets"] - h0 == GOOD_FRAMES_AFTER, \
            f"hostile port took {hp['rx_packets'] - h0} frames, the new front-end sent " \
            f"{GOOD_FRAMES_AFTER}\n{self.context()}"
        assert sp["tx_packets"] - s0 == GOOD_FRAMES_AFTER, \
            f"hsink got {sp['tx_packets'] - s0} frames, expected {GOOD_FRAMES_AFTER}\n" \
            f"{self.context()}"
        self.wait_rise(GSINK, good_before, "the good port to keep forwarding after the fault")
        fe.close()
        self.wait_listening()

    def finish(self):
        """Stops testpmd and checks the good port's accounting, then stops Ferry cleanly."""
        self.check_alive("at the end of the test")
        good = self.port(GOOD)
        assert good["state"] == "running", f"good port is {good['state']!r}\n{self.context()}"
        totals = self.testpmd.stop()
        sent = totals.get("TX-packets")
        assert sent, f"testpmd reports no TX-packets: {totals}\n{self.testpmd.log_tail()}"
        good = h.wait_stable(lambda: self.port(GOOD), quiet=0.5, timeout=15,
                             desc="good port counters to settle")
        assert sent == good["rx_packets"] + h.drop_total(good), \
            f"testpmd sent {sent}, Ferry's good port took {good['rx_packets']} and dropped " \
            f"{good.get('drops')}\n{self.context()}"
        self.check_alive("after testpmd left")
        rc = self.ferry.stop()
        assert rc == 0, f"Ferry exited with {rc} on SIGINT\n{self.ferry.log_tail(40)}"


@pytest.fixture
def rig(testpmd_machine, lab):
    r = Rig(lab)
    try:
        yield r.start()
    finally:
        r.close()  # then conftest.py's lab stops testpmd and Ferry, removes sockets and the work directory


# --------------------------------------------------------------------------- ring faults


def fault_outside_memory(fe: vf.VhostUserFrontend):
    addr = fe.send_descriptor_outside_memory()
    return ["outside guest memory", f"0x{addr:x}"]


def fault_straddling_memory_end(fe: vf.VhostUserFrontend):
    addr = fe.send_descriptor_straddling_memory_end()
    return ["outside guest memory", f"0x{addr:x}"]


def fault_ring_outside_memory(fe: vf.VhostUserFrontend):
    status = fe.set_vring_addr_outside_memory(vf.TX_QUEUE)
    assert status != 0, "Ferry acked SET_VRING_ADDR with a descriptor table outside memory"
    return ["descriptor table", "not in shared memory", f"0x{fe.last_bad_address:x}"]


def fault_looping_chain(fe: vf.VhostUserFrontend):
    fe.send_looping_chain()
    return ["loop"]


def fault_avail_jump(fe: vf.VhostUserFrontend):
    fe.jump_avail_index()
    return ["avail index jumped", f"ring size {fe.size}"]


def fault_ring_size(fe: vf.VhostUserFrontend):
    status = fe.set_vring_num_unchecked(vf.TX_QUEUE, 100)
    assert status != 0, "Ferry acked SET_VRING_NUM 100 (not a power of two) with status 0"
    return ["not a power of two", "100"]


FAULTS = {
    "descriptor-outside-memory": fault_outside_memory,
    "descriptor-straddles-memory-end": fault_straddling_memory_end,
    "looping-chain": fault_looping_chain,
    "avail-index-jump": fault_avail_jump,
    "ring-size-not-power-of-two": fault_ring_size,
    "ring-address-outside-memory": fault_ring_outside_memory,
}


@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_ring_fault_breaks_only_the_hostile_port(rig: Rig, fault: str):
    fe = rig.attach_hostile()
    g0 = rig.port(GSINK)["tx_packets"]
    taken_before = rig.port(HOSTILE)["rx_packets"]

    expect = FAULTS[fault](fe)

    state = rig.wait_state(lambda s: s.startswith("broken: "), "to start with 'broken: '")
    for word in expect:
        assert word in state, f"broken reason {state!r} does not name the fault ({word!r})\n" \
                              f"{rig.context()}"
    rig.check_alive("after the fault")
    status = fe.get_status()
    assert status & vf.S_NEEDS_RESET, \
        f"GET_STATUS 0x{status:x} after the fault lacks NEEDS_RESET (0x40)\n{rig.context()}"
    # The good port goes on while the hostile one is broken.
    g1 = rig.wait_rise(GSINK, g0, "the good port to keep forwarding while hostile is broken")
    # Nothing more comes out of the broken port.
    time.sleep(0.3)
    taken = rig.port(HOSTILE)["rx_packets"]
    assert taken == taken_before, \
        f"broken port still delivered frames ({taken_before} -> {taken})\n{rig.context()}"
    assert rig.port(HOSTILE)["state"] == state, f"state changed while broken\n{rig.context()}"

    lines = rig.wait(lambda: rig.broken_lines(), 5, "the 'device broken' log line")
    fe.close()
    rig.good_frontend_works(g1)

    lines = rig.broken_lines()
    assert len(lines) == 1, f"expected exactly one {BROKEN_LINE!r} line, got {len(lines)}:\n" + \
        "\n".join(lines) + f"\n{rig.context()}"
    for word in expect:
        assert word in lines[0], f"log line {lines[0]!r} does not name the fault ({word!r})"
    rig.finish()


# --------------------------------------------------------------------------- protocol abuse


def test_wrong_payload_size_is_refused(rig: Rig):
    fe = rig.attach_hostile()
    g0 = rig.port(GSINK)["tx_packets"]
    # SET_VRING_NUM with a 4-byte payload (8 expected), need_reply set.
    status = fe.send_malformed(vf.SET_VRING_NUM, b"\x01\x00\x00\x00", need_reply=True)
    rig.check_alive("after a message with a wrong payload size")
    if status is None:
        # Closing the connection is an acceptable answer.
        assert fe.wait_closed(2), "no reply and no close after a malformed message"
    else:
        assert status != 0, "Ferry acked SET_VRING_NUM with a 4-byte payload with status 0"
        # The stream is still in sync: the next request gets its own answer.
        # A refused message changes nothing: the device is not broken by it.
        st = fe.get_status()
        assert st == vf.STATUS_RUNNING, \
            f"GET_STATUS after the refused message: 0x{st:x}, expected 0x{vf.STATUS_RUNNING:x}" \
            f"\n{rig.context()}"
        # And the device still moves frames.
        before = rig.port(HSINK)["tx_packets"]
        fe.send_frames(10)
        assert fe.wait_consumed(timeout=5), f"Ferry stopped consuming\n{rig.context()}"
        rig.wait_rise(HSINK, before + 9, "frames sent after the refused message")
    g1 = rig.wait_rise(GSINK, g0, "the good port to keep forwarding")
    fe.close()
    rig.good_frontend_works(g1)
    rig.finish()


def _connection_closed_without_crash(rig: Rig, fe: vf.VhostUserFrontend, what: str, g0: int):
    assert fe.wait_closed(5), f"Ferry did not close the connection after {what}\n{rig.context()}"
    rig.check_alive(f"after {what}")
    rig.wait_listening()
    return rig.wait_rise(GSINK, g0, f"the good port to keep forwarding after {what}")


def test_garbage_bytes_close_the_connection(rig: Rig):
    g0 = rig.port(GSINK)["tx_packets"]
    # On a fresh connection, before any handshake ...
    fe = rig.frontend()
    fe.send_garbage()
    g0 = _connection_closed_without_crash(rig, fe, "garbage on a fresh connection", g0)
    fe.close()
    # ... and in the middle of a running session.
    fe = rig.attach_hostile()
    fe.send_garbage(b"\xff" * 7 + b"\x00\x13\x37" * 20)
    g1 = _connection_closed_without_crash(rig, fe, "garbage on a running device", g0)
    fe.close()
    assert not rig.broken_lines(), f"garbage marked the device broken:\n{rig.broken_lines()}"
    rig.good_frontend_works(g1)
    rig.finish()


def test_oversized_size_field_closes_the_connection(rig: Rig):
    g0 = rig.port(GSINK)["tx_packets"]
    fe = rig.frontend()
    fe.send_oversized_header(size=0xFFFFFFFF, request=vf.GET_FEATURES)
    g0 = _connection_closed_without_crash(rig, fe, "a header announcing 4 GiB of payload", g0)
    fe.close()
    fe = rig.attach_hostile()
    fe.send_oversized_header(size=0x40000000, request=vf.SET_MEM_TABLE)
    g1 = _connection_closed_without_crash(rig, fe, "SET_MEM_TABLE announcing 1 GiB on a running "
                                          "device", g0)
    fe.close()
    assert not rig.broken_lines(), f"an oversized header marked the device broken"
    rig.good_frontend_works(g1)
    rig.finish()
