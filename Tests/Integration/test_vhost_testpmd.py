"""Ferry's vhost-user port against dpdk-testpmd's virtio-user front-end (DPDK 22.11).

Run as root from the repository root, after `swift build -c release`:

    python3 -m pytest -v Tests/Integration/test_vhost_testpmd.py

FERRY_BIN overrides the Ferry binary, FERRY_TESTPMD the testpmd binary, FERRY_TESTPMD_MEM
(nohuge|huge|auto) testpmd's memory, FERRY_IT_SECONDS how long traffic runs (default 3).
These tests fail (they do not skip) when testpmd, the Ferry binary or root is missing.

Counting rules checked here (Ferry's `ctl stats --json` contract):
  rx = frames Ferry took from a port, tx = frames Ferry handed to a port, every drop counted
  once on the port where it happened under a reason. A sink's deliberate 'sink' drops are not
  losses. testpmd's own final forward totals (printed when it stops) are the ground truth for
  what the front-end put into or took out of the rings.
"""

from __future__ import annotations

import os
import time

import pytest

import harness as h

SECONDS = float(os.environ.get("FERRY_IT_SECONDS", "3"))
GEN_COUNT = 200_000
GEN_DST = "02:00:00:00:00:02"
GEN_SRC = "02:00:00:00:00:01"
MODES = ["ferry-server", "ferry-client"]  # which side listens on the vhost-user socket


# Every test here runs testpmd against Ferry (conftest.py checks the machine once); `lab` is
# conftest.py's.
pytestmark = pytest.mark.usefixtures("testpmd_machine")


def start_pair(lab: h.Lab, mode: str, other_port: str, fe_mode: str, **fe_kw):
    """Ferry with a vhost port named 'vm' and `other_port` (which names itself), plus a
    virtio-user testpmd on the same socket, in the socket roles `mode` asks for:
    ferry-server = Ferry listens, testpmd connects; ferry-client = testpmd listens (server=1)
    and Ferry connects. Returns (ferry, testpmd) with testpmd forwarding.

    A generator joins only once testpmd forwards: virtio's dev_start discards whatever its RX
    rings hold when it starts (DPDK's virtqueue_rxvq_flush, after the back-end's queues run),
    so frames Ferry delivered in that window would be counted by Ferry and never by testpmd."""
    sock = lab.path("vhost.sock")
    late = [other_port] if other_port.startswith("gen:") else []
    early = [] if late else [other_port]
    if mode == "ferry-server":
        ferry = lab.ferry([f"vhost:{sock},name=vm", *early], cpu=0)
        h.wait_for_socket(sock, proc=ferry)
        tp = lab.virtio_user(sock, fe_mode, cpu=1, **fe_kw).start()
    else:
        tp = lab.virtio_user(sock, fe_mode, server=True, cpu=1, **fe_kw).start(wait=False)
        h.wait_for_socket(sock, proc=tp)
        ferry = lab.ferry([f"vhost:{sock},client,name=vm", *early], cpu=0)
        tp.wait_started(timeout=30)
    for spec in late:
        ferry.ctl("port", "add", spec)
    return ferry, tp


def ports(ferry: h.Ferry, *names: str) -> list[dict]:
    stats = ferry.stats()
    return [h.port_stats(stats, n) for n in names]


def settle(ferry: h.Ferry, *names: str, quiet: float = 1.0, timeout: float = 30.0):
    """Wait until the named ports' counters stop moving; return their stats."""
    h.wait_stable(lambda: tuple(h.counters(p) for p in ports(ferry, *names)), quiet=quiet,
                  timeout=timeout, desc=f"Ferry counters of {names} to settle")
    return ports(ferry, *names)


def wait_counter_above(ferry: h.Ferry, name: str, key: str, floor: int, timeout: float,
                       lab: h.Lab) -> int:
    """Wait until port `name`'s counter `key` exceeds `floor`; return its value."""
    def above():
        value = h.port_stats(ferry.stats(), name)[key]
        return value if value > floor else None
    try:
        return h.wait_until(above, timeout, f"{name}.{key} > {floor}")
    except TimeoutError as exc:
        pytest.fail(f"{exc}\nlast stats: {safe_stats(ferry)}\n{lab.logs()}")


def safe_stats(ferry: h.Ferry):
    try:
        return ferry.stats()
    except Exception as exc:  # for messages only
        return f"<stats unavailable: {exc}>"


def check_queue_sums(port: dict):
    """Per-queue counters add up to the port's."""
    queues = port.get("queues") or []
    assert queues, f"port {port.get('name')} reports no queues: {port}"
    for key in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes"):
        total = sum(int(q.get(key, 0)) for q in queues)
        assert total == port[key], f"{port['name']}: queues' {key} add up to {total}, " \
                                   f"port says {port[key]}"
    qdrops = sum(h.drop_total(q, exclude=()) for q in queues)
    assert qdrops == h.drop_total(port, exclude=()), \
        f"{port['name']}: queues' drops {qdrops} != port drops {port.get('drops')}"


# --------------------------------------------------------------------------- a. txonly -> sink


@pytest.mark.parametrize("size", [64, 1518])
@pytest.mark.parametrize("mode", MODES)
def test_virtio_txonly_into_sink(lab, mode, size):
    ferry, tp = start_pair(lab, mode, "sink:name=sink", "txonly", txpkts=size)
    wait_counter_above(ferry, "vm", "rx_packets", 0, 15, lab)
    time.sleep(SECONDS)

    t = tp.stop()
    assert "TX-packets" in t, f"testpmd printed no final totals\n{tp.log_tail()}"
    vm, sink = settle(ferry, "vm", "sink")
    sent = t["TX-packets"]
    ctx = f"testpmd totals {t}\nferry vm={vm}\nferry sink={sink}\n{lab.logs(15)}"

    assert sent > 0, f"testpmd sent nothing\n{ctx}"
    assert vm["rx_packets"] > 0, f"Ferry took no frames from the vhost port\n{ctx}"
    # Everything testpmd put in the TX ring was either taken or dropped (with a reason) by Ferry.
    # (testpmd stops forwarding ~1 s before it stops the device, so a polling back-end has
    # emptied the ring before GET_VRING_BASE arrives.)
    assert sent == vm["rx_packets"] + h.drop_total(vm), \
        f"testpmd TX-packets {sent} != vm rx_packets {vm['rx_packets']} + vm drops " \
        f"{vm.get('drops')} (difference {sent - vm['rx_packets'] - h.drop_total(vm)})\n{ctx}"
    # Everything taken reached the sink, except frames dropped on the way (counted at the sink).
    assert sink["tx_packets"] == vm["rx_packets"] - h.drop_total(sink), \
        f"sink tx_packets {sink['tx_packets']} != vm rx_packets {vm['rx_packets']} - sink " \
        f"losses {sink.get('drops')}\n{ctx}"
    assert vm["rx_bytes"] == vm["rx_packets"] * size, \
        f"vm rx_bytes {vm['rx_bytes']} != {vm['rx_packets']} frames x {size} B\n{ctx}"
    assert vm["tx_packets"] == 0, f"Ferry sent frames to a txonly front-end\n{ctx}"
    check_queue_sums(vm)


@pytest.mark.parametrize("mode", MODES)
def test_virtio_exact_count_into_sink(lab, mode):
    """testpmd sends an exact number of frames (interactive `start tx_first N`)."""
    bursts, burst = 3000, 32
    ferry, tp = start_pair(lab, mode, "sink:name=sink", "rxonly", interactive=True, txpkts=64,
                           burst=burst)
    tp.tx_first(bursts)
    vm, sink = settle(ferry, "vm", "sink")
    t = tp.stop()
    assert "TX-packets" in t, f"testpmd printed no final totals\n{tp.log_tail()}"
    vm, sink = ports(ferry, "vm", "sink")
    ctx = f"testpmd totals {t}\nferry vm={vm}\nferry sink={sink}\n{lab.logs(15)}"
    assert t["TX-packets"] + t.get("TX-dropped", 0) == bursts * burst, \
        f"testpmd did not attempt exactly {bursts * burst} frames\n{ctx}"
    assert t["TX-packets"] > 0, f"testpmd could not send anything\n{ctx}"
    assert t["TX-packets"] == vm["rx_packets"] + h.drop_total(vm), \
        f"testpmd TX-packets {t['TX-packets']} != vm rx_packets {vm['rx_packets']} + drops " \
        f"{vm.get('drops')}\n{ctx}"
    assert sink["tx_packets"] == vm["rx_packets"] - h.drop_total(sink), ctx


# --------------------------------------------------------------------------- b. gen -> rxonly


@pytest.mark.parametrize("size", [64, 1518, 9000])
@pytest.mark.parametrize("mode", MODES)
def test_gen_into_virtio_rxonly(lab, mode, size):
    fe_kw = {"mrg_rxbuf": True} if size > 1518 else {}
    gen = f"gen:dst={GEN_DST},src={GEN_SRC},size={size},count={GEN_COUNT},name=gen"
    ferry, tp = start_pair(lab, mode, gen, "rxonly", **fe_kw)

    def generated():
        g = h.port_stats(ferry.stats(), "gen")
        return g["rx_packets"] >= GEN_COUNT
    try:
        h.wait_until(generated, 120, f"gen to produce {GEN_COUNT} frames")
    except TimeoutError as exc:
        pytest.fail(f"{exc}\nlast stats: {safe_stats(ferry)}\n{lab.logs()}")
    g, vm = settle(ferry, "gen", "vm")
    # Let the front-end drain the used ring before it stops.
    h.wait_stable(lambda: tp.nic_value("RX-packets"), quiet=2.0, timeout=30,
                  desc="testpmd's RX counter to settle")
    t = tp.stop()
    assert "RX-packets" in t, f"testpmd printed no final totals\n{tp.log_tail()}"
    g, vm = ports(ferry, "gen", "vm")
    received = t["RX-packets"]
    ctx = f"testpmd totals {t}\nferry gen={g}\nferry vm={vm}\n{lab.logs(15)}"

    assert g["rx_packets"] == GEN_COUNT, \
        f"gen produced {g['rx_packets']} frames, asked for count={GEN_COUNT}\n{ctx}"
    assert vm["tx_packets"] + h.drop_total(vm) == GEN_COUNT, \
        f"vm tx_packets {vm['tx_packets']} + vm drops {vm.get('drops')} != {GEN_COUNT}\n{ctx}"
    assert vm["tx_packets"] > 0, \
        "no generated frame reached the front-end (all dropped: does gen run before the " \
        f"vhost port is up?)\n{ctx}"
    assert received == vm["tx_packets"], \
        f"testpmd RX-packets {received} != vm tx_packets {vm['tx_packets']}\n{ctx}"
    assert vm["tx_bytes"] == vm["tx_packets"] * size, \
        f"vm tx_bytes {vm['tx_bytes']} != {vm['tx_packets']} frames x {size} B\n{ctx}"
    nic_bytes = t.get("NIC-RX-bytes")
    if nic_bytes is not None and t.get("NIC-RX-packets") == received:
        assert nic_bytes == received * size, \
            f"testpmd received {nic_bytes} B in {received} frames, expected {size} B each\n{ctx}"
    assert t.get("RX-dropped", 0) == 0, f"testpmd missed frames\n{ctx}"
    check_queue_sums(vm)


def test_front_end_takes_in_order_and_runs_its_in_order_paths(lab):
    """Ferry offers VIRTIO_F_IN_ORDER, so virtio-user (in_order=1 by default) runs its in-order
    receive and transmit paths — the ones it runs against DPDK's vhost — which find a chain's
    buffers by the used entry's position. Every test above that runs virtio-user then exercises
    them; here mergeable buffers (a 9000-byte frame over several chains, each by position) and
    the byte count say the chains came back where the front-end looks for them."""
    size = 9000
    gen = f"gen:dst={GEN_DST},src={GEN_SRC},size={size},count=20000,name=gen"
    ferry, tp = start_pair(lab, "ferry-server", gen, "rxonly", mrg_rxbuf=True,
                           extra_eal=["--log-level=pmd.net.virtio.init:info"])
    h.wait_until(lambda: h.port_stats(ferry.stats(), "gen")["rx_packets"] >= 20000, 60,
                 "gen to produce 20000 frames")
    settle(ferry, "gen", "vm")
    h.wait_stable(lambda: tp.nic_value("RX-packets"), quiet=2.0, timeout=30,
                  desc="testpmd's RX counter to settle")
    t = tp.stop()
    vm, = ports(ferry, "vm")
    log = tp.log_text()
    ctx = f"testpmd totals {t}\nferry vm={vm}\n{lab.logs(15)}"
    features = [int(line.split("features 0x")[1].split()[0], 16)
                for line in ferry.log_text().splitlines() if "vhost-user vm: features 0x" in line]
    assert features and features[-1] & (1 << 35), f"the front-end did not take IN_ORDER\n{ctx}"
    assert "using inorder Rx path" in log and "using inorder Tx path" in log, \
        f"virtio-user did not choose its in-order paths\n{ctx}"
    assert vm["tx_packets"] > 0 and t["RX-packets"] == vm["tx_packets"], ctx
    if t.get("NIC-RX-packets") == t["RX-packets"] and t.get("NIC-RX-bytes") is not None:
        assert t["NIC-RX-bytes"] == t["RX-packets"] * size, \
            f"frames over several chains came back with the wrong lengths\n{ctx}"


# --------------------------------------------------------------------------- d. reconnects


def test_reconnect_ferry_server_testpmd_restarts_txonly(lab):
    """Ferry listens; testpmd (txonly) goes away and comes back; Ferry keeps running."""
    sock = lab.path("vhost.sock")
    ferry = lab.ferry([f"vhost:{sock},name=vm", "sink:name=sink"], cpu=0)
    h.wait_for_socket(sock, proc=ferry)

    sent = 0
    floor = 0
    for round_ in range(2):
        tp = lab.virtio_user(sock, "txonly", cpu=1, txpkts=64).start()
        wait_counter_above(ferry, "vm", "rx_packets", floor + 1000, 20, lab)
        time.sleep(1)
        t = tp.stop()
        sent += t["TX-packets"]
        vm, = settle(ferry, "vm")
        floor = vm["rx_packets"]
        assert ferry.running(), f"Ferry exited after testpmd left\n{lab.logs()}"

    vm, sink = ports(ferry, "vm", "sink")
    ctx = f"ferry vm={vm}\nsink={sink}\n{lab.logs(15)}"
    # Across both sessions nothing was lost or double-counted (resume from the used index).
    assert sent == vm["rx_packets"] + h.drop_total(vm), \
        f"testpmd sent {sent} in two sessions; vm rx {vm['rx_packets']} + drops " \
        f"{vm.get('drops')}\n{ctx}"
    assert sink["tx_packets"] == vm["rx_packets"] - h.drop_total(sink), ctx


def test_reconnect_ferry_server_testpmd_restarts_rxonly(lab):
    """Ferry listens and generates; the receiving testpmd goes away and comes back."""
    sock = lab.path("vhost.sock")
    gen = f"gen:dst={GEN_DST},src={GEN_SRC},size=64,name=gen"
    ferry = lab.ferry([gen, f"vhost:{sock},name=vm"], cpu=0)
    h.wait_for_socket(sock, proc=ferry)

    floor = 0
    for round_ in range(2):
        tp = lab.virtio_user(sock, "rxonly", cpu=1).start()
        floor = wait_counter_above(ferry, "vm", "tx_packets", floor + 1000, 20, lab)
        time.sleep(1)
        t = tp.stop()
        assert t.get("RX-packets", 0) > 0, \
            f"testpmd session {round_ + 1} received nothing: {t}\n{lab.logs()}"
        time.sleep(0.5)
        floor = h.port_stats(ferry.stats(), "vm")["tx_packets"]
        assert ferry.running(), f"Ferry exited after testpmd left\n{lab.logs()}"


def test_reconnect_ferry_client_ferry_restarts(lab):
    """testpmd listens (server=1) and keeps running; Ferry (client) is restarted, then testpmd
    is restarted while Ferry keeps running; traffic resumes each time."""
    sock = lab.path("vhost.sock")
    tp = lab.virtio_user(sock, "txonly", server=True, cpu=1, txpkts=64).start(wait=False)
    h.wait_for_socket(sock, proc=tp)
    spec = [f"vhost:{sock},client,name=vm", "sink:name=sink"]

    ferry = lab.ferry(spec, cpu=0)
    tp.wait_started(timeout=30)
    wait_counter_above(ferry, "vm", "rx_packets", 1000, 20, lab)

    # 1. Ferry goes away and comes back; testpmd keeps running.
    ferry.stop()
    assert tp.running(), f"testpmd exited when Ferry stopped\n{lab.logs()}"
    time.sleep(1)
    ferry = lab.ferry(spec, cpu=0)
    wait_counter_above(ferry, "vm", "rx_packets", 1000, 30, lab)
    assert tp.running(), f"testpmd died\n{lab.logs()}"

    # 2. testpmd goes away and comes back; Ferry keeps running and reconnects.
    tp.stop()
    vm, = settle(ferry, "vm")
    floor = vm["rx_packets"]
    assert ferry.running(), f"Ferry exited when testpmd went away\n{lab.logs()}"
    tp = lab.virtio_user(sock, "txonly", server=True, cpu=1, txpkts=64).start(wait=False)
    h.wait_for_socket(sock, proc=tp)
    try:
        tp.wait_started(timeout=45)  # returns once Ferry has reconnected
    except h.TestpmdError as exc:
        pytest.fail(f"Ferry did not reconnect to the restarted testpmd: {exc}\n{lab.logs()}")
    wait_counter_above(ferry, "vm", "rx_packets", floor + 1000, 30, lab)
    t = tp.stop()
    assert t.get("TX-packets", 0) > 0, f"second testpmd sent nothing: {t}\n{lab.logs()}"


# --------------------------------------------------------------------------- multiqueue


@pytest.mark.parametrize("mode", MODES)
def test_multiqueue_txonly_into_sink(lab, mode):
    """queues=2 on both sides: testpmd sends on both TX queues; Ferry polls both and counts
    each queue pair on its own, and the per-queue counts add up to what testpmd sent."""
    sock = lab.path("vhost.sock")
    if mode == "ferry-server":
        ferry = lab.ferry([f"vhost:{sock},queues=2,name=vm", "sink:name=sink"], cpu=0)
        h.wait_for_socket(sock, proc=ferry)
        tp = lab.virtio_user(sock, "txonly", cpu=1, queues=2, txpkts=64).start()
    else:
        tp = lab.virtio_user(sock, "txonly", server=True, cpu=1, queues=2, txpkts=64).start(wait=False)
        h.wait_for_socket(sock, proc=tp)
        ferry = lab.ferry([f"vhost:{sock},client,queues=2,name=vm", "sink:name=sink"], cpu=0)
        tp.wait_started(timeout=30)
    wait_counter_above(ferry, "vm", "rx_packets", 0, 15, lab)
    time.sleep(SECONDS)
    t = tp.stop()
    assert "TX-packets" in t, f"testpmd printed no final totals\n{tp.log_tail()}"
    vm, sink = settle(ferry, "vm", "sink")
    ctx = f"testpmd totals {t}\nferry vm={vm}\nferry sink={sink}\n{lab.logs(15)}"
    queues = vm["queues"]
    assert len(queues) == 2, f"vm reports {len(queues)} queue pairs, wanted 2\n{ctx}"
    for q in queues:
        assert q["rx_packets"] > 0, f"queue pair {q['queue']} carried nothing\n{ctx}"
    assert t["TX-packets"] == vm["rx_packets"] + h.drop_total(vm), ctx
    assert sink["tx_packets"] == vm["rx_packets"], ctx
    check_queue_sums(vm)


# --------------------------------------------------------------------------- packed rings


@pytest.mark.parametrize("size", [64, 1518, 9000])
def test_packed_exact_count_into_sink(lab, size):
    """virtio-user with packed_vq=1 (VIRTIO_F_RING_PACKED) sends an exact number of frames
    through Ferry's packed TX ring: every frame taken or counted, at full length."""
    bursts, burst = 1000, 32
    ferry, tp = start_pair(lab, "ferry-server", "sink:name=sink", "rxonly", packed_vq=True,
                           interactive=True, txpkts=size, burst=burst)
    tp.tx_first(bursts)
    vm, sink = settle(ferry, "vm", "sink")
    t = tp.stop()
    assert "TX-packets" in t, f"testpmd printed no final totals\n{tp.log_tail()}"
    vm, sink = ports(ferry, "vm", "sink")
    ctx = f"testpmd totals {t}\nferry vm={vm}\nferry sink={sink}\n{lab.logs(15)}"
    assert ", packed rings)" in ferry.log_text(), f"the front-end did not negotiate packed rings\n{ctx}"
    assert t["TX-packets"] + t.get("TX-dropped", 0) == bursts * burst, \
        f"testpmd did not attempt exactly {bursts * burst} frames\n{ctx}"
    # A full ring makes testpmd drop (TX-dropped) on a loaded machine: what counts is that every
    # frame it did put in the ring is accounted for.
    assert t["TX-packets"] > 0, f"testpmd could not send anything\n{ctx}"
    assert t["TX-packets"] == vm["rx_packets"] + h.drop_total(vm), \
        f"testpmd TX-packets {t['TX-packets']} != vm rx_packets {vm['rx_packets']} + drops " \
        f"{vm.get('drops')}\n{ctx}"
    assert h.drop_total(vm) == 0, f"Ferry dropped frames of a well-behaved packed ring\n{ctx}"
    assert vm["rx_bytes"] == vm["rx_packets"] * size, ctx
    assert sink["tx_packets"] == vm["rx_packets"] - h.drop_total(sink), ctx


@pytest.mark.parametrize("size", [64, 1518, 9000])
def test_gen_into_packed_rxonly(lab, size):
    """A generator's exact count into virtio-user's packed RX ring (mergeable buffers for
    jumbo frames): testpmd receives exactly what Ferry says it handed over, at full length."""
    count = 50_000
    fe_kw = {"mrg_rxbuf": True} if size > 1518 else {}
    gen = f"gen:dst={GEN_DST},src={GEN_SRC},size={size},count={count},name=gen"
    ferry, tp = start_pair(lab, "ferry-server", gen, "rxonly", packed_vq=True, **fe_kw)

    def generated():
        return h.port_stats(ferry.stats(), "gen")["rx_packets"] >= count
    try:
        h.wait_until(generated, 120, f"gen to produce {count} frames")
    except TimeoutError as exc:
        pytest.fail(f"{exc}\nlast stats: {safe_stats(ferry)}\n{lab.logs()}")
    settle(ferry, "gen", "vm")
    h.wait_stable(lambda: tp.nic_value("RX-packets"), quiet=2.0, timeout=30,
                  desc="testpmd's RX counter to settle")
    t = tp.stop()
    assert "RX-packets" in t, f"testpmd printed no final totals\n{tp.log_tail()}"
    g, vm = ports(ferry, "gen", "vm")
    ctx = f"testpmd totals {t}\nferry gen={g}\nferry vm={vm}\n{lab.logs(15)}"
    assert ", packed rings)" in ferry.log_text(), f"the front-end did not negotiate packed rings\n{ctx}"
    assert g["rx_packets"] == count, ctx
    assert vm["tx_packets"] + h.drop_total(vm) == count, ctx
    assert vm["tx_packets"] > 0, f"no generated frame reached the front-end\n{ctx}"
    assert t["RX-packets"] == vm["tx_packets"], \
        f"testpmd RX-packets {t['RX-packets']} != vm tx_packets {vm['tx_packets']}\n{ctx}"
    assert vm["tx_bytes"] == vm["tx_packets"] * size, ctx
    nic_bytes = t.get("NIC-RX-bytes")
    if nic_bytes is not None and t.get("NIC-RX-packets") == t["RX-packets"]:
        assert nic_bytes == t["RX-packets"] * size, ctx
    assert t.get("RX-dropped", 0) == 0, f"testpmd missed frames\n{ctx}"
