"""The performance lab (issue 15): the generator's stamped frames, the sink's analysis of them,
and `ferry lab`, against real peers: dpdk-testpmd (virtio-user rxonly, txonly, and macswap as a
loop through a guest's rings) and a TAP into a namespace's kernel that forwards frames back.

Run as root from the repository root, after `swift build -c release`:

    python3 -m pytest -v Tests/Integration/test_lab.py

These tests fail (they do not skip) when testpmd, the Ferry binary, tc's tbf or root is missing. About 2 min.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.request

import pytest

import harness as h
from lab_loops import GEN_SRC, LOOP_MAC, kernel_loop

pytestmark = pytest.mark.usefixtures("testpmd_machine")


def run_lab(lab: h.Lab, args: list[str], timeout: float = 180) -> tuple[dict, str]:
    """`ferry lab ARGS --json FILE` on CPU 0; its JSON and its printed table."""
    out = lab.path(f"lab-{time.monotonic_ns()}.json")
    cmd = [h.ferry_binary(), "lab", *args, "--cpus", "0", "--json", out]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout}\n{p.stderr}\n{lab.logs()}"
    with open(out) as f:
        return json.load(f), p.stdout


def loop_fdb(loop_port: str) -> list[str]:
    return ["--fdb", f"{LOOP_MAC},port={loop_port}", "--fdb", f"{GEN_SRC},port=s"]


def check_latency_ordered(latency: dict, what: str):
    p50, p99, p999, top = (latency[k] for k in ("p50_ns", "p99_ns", "p99_9_ns", "max_ns"))
    assert 0 < p50 <= p99 <= p999 <= top, f"{what}: latency percentiles not ordered or zero: {latency}"


def test_one_ferry_accounts_for_every_frame(lab):
    """Generator -> switch -> analyser in one Ferry: every frame of 4 flows, in order, none lost."""
    n = 100_000
    ferry = lab.ferry([f"gen:dst={LOOP_MAC},src={GEN_SRC},size=imix,flows=4,rate=200kpps,count={n},name=g",
                       "sink:name=s"], cpu=0)
    h.wait_until(lambda: ferry.port("g")["state"] == "finished", 30, "the generator to finish")
    s = h.wait_stable(lambda: ferry.port("s")["tx_packets"], quiet=0.3, timeout=10, desc="the sink")
    sink = ferry.port("s")
    a = sink["analysis"]
    ctx = f"sink {sink}\n{lab.logs()}"
    assert s == n and a["stamped"] == n, ctx
    assert (a["lost"], a["reordered"], a["duplicates"], a["late"], a["unstamped"]) == (0, 0, 0, 0, 0), ctx
    assert sorted(f["frames"] for f in a["flows"]) == [n // 4] * 4, ctx
    check_latency_ordered(a["latency"], "gen -> sink")
    gen = ferry.port("g")
    assert gen["generator"]["sent"] == n and gen["generator"]["rate_pps"] == 200_000, gen


def test_the_generator_holds_1_mpps(lab):
    """gen -> switch -> sink in one Ferry at 1 Mpps: the sink's rate over each of Ferry's
    once-a-second samples is 1 Mpps +- 1 % (the median of the samples in which the generator
    gave nothing up: a worker descheduled > 50 ms on a loaded machine skips frames, which a
    pacer cannot help), and no frame is lost. A pacer that sends too fast, too slowly or one
    burst per pass fails it."""
    rate = 1_000_000
    ferry = lab.ferry([f"gen:dst={LOOP_MAC},src={GEN_SRC},size=64,flows=4,rate=1Mpps,name=g", "sink:name=s"], cpu=0)
    clean, seen = [], []
    lagged = ferry.port("g")["generator"]["lagged"]
    for _ in range(6):
        time.sleep(1.1)
        stats = ferry.stats()
        gen, sink = h.port_stats(stats, "g"), h.port_stats(stats, "s")
        seen.append((sink["rates"]["tx_pps"], gen["generator"]["lagged"] - lagged))
        if gen["generator"]["lagged"] == lagged and sink["rates"]["tx_pps"] > 0:
            clean.append(sink["rates"]["tx_pps"])
        lagged = gen["generator"]["lagged"]
    ctx = f"(pps at the sink, frames given up) per sample: {seen}\n{lab.logs()}"
    assert len(clean) >= 3, f"the generator gave frames up in almost every second (a loaded machine?)\n{ctx}"
    measured = h.median(clean)
    assert abs(measured - rate) <= rate / 100, f"the sink saw {measured} pps, not {rate} +- 1 %\n{ctx}"
    analysis = h.port_stats(ferry.stats(), "s")["analysis"]
    assert (analysis["lost"], analysis["duplicates"], analysis["reordered"]) == (0, 0, 0), f"{analysis}\n{ctx}"


def test_a_running_lab_shows_its_counters_live(lab):
    """`ferry lab --control --metrics`: while a trial runs, `ferry ctl stats --json` has the sink's
    analysis and the generator's counts, and /metrics the analyser's and generator's series."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    control, out = lab.path("lab.sock"), lab.path("live.json")
    cmd = [h.ferry_binary(), "lab", "throughput", "--port", f"gen:dst={LOOP_MAC},src={GEN_SRC},size=64,name=g",
           "--port", "sink:name=s", "--rate", "100kpps", "--duration", "4", "--cpus", "0",
           "--control", control, "--metrics", f"127.0.0.1:{port}", "--json", out]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def stamped():
            try:
                return h.port_stats(h.ferry_ctl(control, "stats"), "s")["analysis"]["stamped"]
            except h.FerryError:
                return 0
        h.wait_until(lambda: stamped() > 0, 20, "the running lab's sink to count stamped frames")
        stats = h.ferry_ctl(control, "stats")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            metrics = reply.read().decode()
        gen, sink = h.port_stats(stats, "g"), h.port_stats(stats, "s")
        assert gen["generator"]["sent"] > 0 and sink["analysis"]["latency"]["count"] > 0, stats
        for series in ('ferry_analyser_frames_total{port="s",stamp="yes"}', "ferry_generator_lagged_total"):
            assert series in metrics, f"{series} not in /metrics:\n{metrics[:3000]}"
    finally:
        stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, f"{stdout}\n{stderr}"


def start_loop(lab: h.Lab, mode: str = "macswap", queue_size: int | None = None, buffers: int | None = None):
    """testpmd virtio-user listening on a socket (server=1), so that a Ferry started after it
    connects; returns (socket path, testpmd). `buffers`: receive buffers it posts and transmit
    descriptors it keeps (--rxd/--txd; else 512 at most, whatever the ring's size)."""
    sock = lab.path("loop.sock")
    extra = [f"--rxd={buffers}", f"--txd={buffers}"] if buffers else []
    tp = lab.virtio_user(sock, mode, server=True, cpu=1, queue_size=queue_size, extra_app=extra).start(wait=False)
    h.wait_for_socket(sock, proc=tp)
    return sock, tp


@contextlib.contextmanager
def realtime_forwarding(tp: h.Testpmd):
    """While in the block, testpmd's forwarding lcore (a thread from its start, busy-polling once
    it forwards) has its CPU whenever it wants it (SCHED_FIFO 1), as a lab gives the device under
    test a core of its own. In the fair class on a busy CPU a busy-polling testpmd waits its turn
    for milliseconds at a time (p50 through it 12 ms and 18 % lost at 20 kpps, load 8): that
    measures the scheduler, not a loop through a guest's rings. Its main lcore (statistics, stop)
    stays in the fair class, and the block is kept short: a real-time busy poller leaves the
    rest of its CPU's work 5 % of it."""
    workers = []
    for tid in os.listdir(f"/proc/{tp.pid}/task"):
        with open(f"/proc/{tp.pid}/task/{tid}/comm") as f:
            name = f.read().strip()
        if int(tid) != tp.pid and ("worker" in name or "lcore" in name):
            workers.append((int(tid), name))
    assert len(workers) == 1, f"cannot tell testpmd's forwarding lcore among its threads: {workers}"
    tid = workers[0][0]
    os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(1))
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):  # testpmd gone: the block's own error says why
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))


def wait_forwarding(ferry: h.Ferry, tp: h.Testpmd):
    """Until testpmd has printed its forwarding set-up and Ferry runs the device, and a second
    more (testpmd polls only once its forwarding lcore has started)."""
    tp.wait_started(timeout=30)
    h.wait_until(lambda: ferry.port("vm")["state"] == "running", 30, "the vhost port to run")
    time.sleep(1)


def test_a_ring_too_small_loses_exactly_what_it_drops(lab):
    """Through testpmd's macswap loop with a 64-entry ring and 256-frame bursts at 2 Mpps: the
    frames the analyser misses are exactly those Ferry dropped at the full ring plus those
    testpmd could not send back."""
    n = 200_000
    sock, tp = start_loop(lab, queue_size=64)
    ferry = lab.ferry([f"vhost:{sock},client,name=vm", "sink:name=s"], cpu=0, extra_args=loop_fdb("vm"))
    wait_forwarding(ferry, tp)
    ferry.ctl("port", "add", f"gen:dst={LOOP_MAC},src={GEN_SRC},size=64,rate=2Mpps,burst=256,count={n},name=g")
    h.wait_until(lambda: ferry.port("g")["state"] == "finished", 60, "the generator to finish")
    h.wait_stable(lambda: ferry.port("s")["tx_packets"], quiet=1.0, timeout=20, desc="the sink")
    t = tp.stop()
    vm, sink = ferry.port("vm"), ferry.port("s")
    a = sink["analysis"]
    ctx = f"testpmd {t}\nvm {vm}\nsink {sink}\n{lab.logs()}"
    ring_full = h.drop_total(vm, exclude=())
    assert ring_full > 0, f"nothing was dropped: the test proves nothing\n{ctx}"
    missing = n - a["stamped"]
    assert missing == ring_full + t.get("TX-dropped", 0), \
        f"{missing} frames missing, Ferry dropped {vm.get('drops')}, testpmd TX-dropped " \
        f"{t.get('TX-dropped', 0)}\n{ctx}"
    # Gaps show when a later frame comes: the frames lost after the last one that came do not.
    assert 0 < a["lost"] <= missing, ctx
    assert a["duplicates"] == 0 and a["unstamped"] == 0, ctx


def test_testpmd_sees_the_rate_ferry_was_asked_for(lab):
    """Ferry's generator at 100 kpps (full=wait), started with the guest's port before testpmd
    runs its rings, into testpmd rxonly: testpmd receives every frame, none is dropped, and its
    per-second readings are 100 kpps +- 1 % (their median, over the seconds in which the generator
    gave nothing up: a worker descheduled for over 50 ms on a loaded machine skips frames, which
    a pacer cannot help). full=wait because testpmd is descheduled for longer than its ring lasts
    on a loaded machine, at any time, not only at its start: a generator on a wire would lose
    those frames, one that honours flow control catches up. testpmd's forwarding lcore is
    real-time while it is measured, with 4096 buffers (41 ms), for the same reason as in the
    latency test: else on a busy CPU 1 it took a quarter less, in every second."""
    rate, seconds = 100_000, 8
    n = rate * seconds
    sock, tp = start_loop(lab, mode="rxonly", queue_size=4096, buffers=4096)
    ferry = lab.ferry([f"vhost:{sock},client,name=vm"], cpu=0)
    tp.wait_started(timeout=30)
    # Only now: testpmd's start discards what its RX ring holds (see test_vhost_testpmd.start_pair).
    ferry.ctl("port", "add", f"gen:dst={LOOP_MAC},src={GEN_SRC},size=64,rate={rate}pps,full=wait,count={n},name=g")
    given_up: list[tuple[float, int]] = []  # (time, frames the generator had given up by then)
    with realtime_forwarding(tp):
        time.sleep(1.0)
        start = time.monotonic()
        while time.monotonic() < start + 5.2:
            given_up.append((time.monotonic(), ferry.port("g")["generator"]["lagged"]))
            time.sleep(0.1)

    def frames_given_up(at: float, after: bool) -> int | None:
        """What the generator had given up by the first reading after `at` (or the last before)."""
        readings = [g for t, g in given_up if t >= at] if after else [g for t, g in given_up if t <= at]
        return (readings[0] if after else readings[-1]) if readings else None

    seen, clean = [], []
    for end, pps in tp.timed_pps_samples("rx", since=start + 1.1, until=given_up[-1][0]):
        before, after = frames_given_up(end - 1.1, after=False), frames_given_up(end, after=True)
        seen.append((round(end - start, 2), pps, None if before is None or after is None else after - before))
        if before is not None and after == before:
            clean.append(pps)
    h.wait_until(lambda: ferry.port("g")["state"] == "finished", 60, "the generator to finish")
    h.wait_stable(lambda: tp.nic_value("RX-packets"), quiet=1.5, timeout=20, desc="testpmd's RX counter")
    t = tp.stop()
    vm, gen = ferry.port("vm"), ferry.port("g")
    ctx = (f"testpmd {t}\n(seconds, pps at testpmd, frames given up) per reading: {seen}\n"
           f"vm {vm}\ngen {gen}\n{lab.logs()}")
    print(f"(seconds, pps at testpmd, frames given up) per reading: {seen}")
    assert gen["generator"]["sent"] == n, ctx
    assert t["RX-packets"] == vm["tx_packets"] == n and h.drop_total(vm, exclude=()) == 0, ctx
    assert len(clean) >= 2, f"the generator gave frames up in almost every second (a loaded machine?)\n{ctx}"
    measured = h.median(clean)
    assert abs(measured - rate) <= rate / 100, \
        f"testpmd saw {measured} pps, not {rate} +- 1 % (did it keep up? a loaded machine?)\n{ctx}"


def test_testpmd_txonly_into_the_analyser_agrees(lab):
    """testpmd txonly into Ferry's sink: what testpmd sent is what the analyser counted (unstamped)."""
    sock, tp = start_loop(lab, mode="txonly")
    ferry = lab.ferry([f"vhost:{sock},client,name=vm", "sink:name=s"], cpu=0)
    tp.wait_started(timeout=30)
    time.sleep(2)
    t = tp.stop()
    h.wait_stable(lambda: ferry.port("s")["tx_packets"], quiet=0.5, timeout=10, desc="the sink")
    vm, sink = ferry.port("vm"), ferry.port("s")
    ctx = f"testpmd {t}\nvm {vm}\nsink {sink}"
    assert t["TX-packets"] > 0 and t["TX-packets"] == vm["rx_packets"] + h.drop_total(vm, exclude=()), ctx
    assert sink["analysis"]["unstamped"] == sink["tx_packets"] == vm["rx_packets"], ctx


def run_lab_in(lab: h.Lab, ns, args: list[str], timeout: float = 180) -> tuple[dict, str]:
    """`ferry lab ARGS` inside namespace `ns` (where its TAP is), on CPU 0; its JSON and table."""
    out = lab.path(f"lab-{time.monotonic_ns()}.json")
    cmd = ["ip", "netns", "exec", ns.name, h.ferry_binary(), "lab", *args, "--cpus", "0", "--json", out]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    with open(out) as f:
        return json.load(f), p.stdout


# The device under test of the NDR search: a kernel that forwards frames back through a token
# bucket of SHAPED_PPS 64-byte frames a second with 100 ms of them as its burst and 10 ms as its
# queue. Its capacity is the clock's, not the scheduler's: the generator never runs ahead of its
# schedule (a late worker catches up by at most 50 ms), so below SHAPED_PPS the bucket never runs
# dry however the machine stalls Ferry, and above it a trial of d seconds loses once
# (rate - SHAPED_PPS) x d exceeds the burst and the queue: a 0.5 s trial passes up to ~1.22 x
# SHAPED_PPS. It is well below what Ferry forwards through a namespace's kernel on a loaded
# machine (~40 kpps at load 13, when a 40 kpps shaper was as fast as Ferry and the searches
# found Ferry's rate, 9 % apart).
SHAPED_PPS = 10_000
SHAPER = f"rate {SHAPED_PPS * 64 * 8}bit burst {SHAPED_PPS * 64 // 10}b limit {SHAPED_PPS * 64 // 100}b"


def test_ndr_search_converges_and_repeats(lab, namespaces):
    """The NDR through a device under test of known capacity (a TAP into a namespace's kernel,
    shaped to 10 kpps), found twice: the search converges, finds the capacity, and the two runs
    agree within 10 %. (A loop through dpdk-testpmd is no such device on a shared machine: a
    busy-polling testpmd that waits its turn on a busy CPU loses frames at every rate, so two
    searches through it agree only on a quiet machine.)"""
    ns = namespaces("labndr")
    kernel_loop(ns, "labn0", SHAPER)
    found = []
    for _ in range(2):
        result, table = run_lab_in(lab, ns, ["ndr", "--port", f"gen:dst={LOOP_MAC},src={GEN_SRC},size=64,name=g",
                                             "--port", "tap:labn0,name=k", "--port", "sink:name=s", *loop_fdb("k"),
                                             "--rate", f"{SHAPED_PPS * 4}pps", "--duration", "0.5",
                                             "--precision", "5"])
        print(table)
        assert result["ndr_pps"] > 0 and result["pdr_pps"] >= result["ndr_pps"], table
        ndr_trials = [t for t in result["trials"] if t["purpose"] == "ndr"]
        # The upper bound, then halvings down to 5 % of the answer, or to 5 % of the bound.
        assert 1 <= len(ndr_trials) <= 1 + 9, f"the search did not converge\n{table}"
        # Below the shaper's rate nothing is lost (less: the search or Ferry lost frames it
        # should not have); above its rate and burst, no trial can pass.
        assert 0.9 * SHAPED_PPS <= result["ndr_pps"] <= 1.3 * SHAPED_PPS, \
            f"the NDR is not the shaper's {SHAPED_PPS} pps\n{table}"
        found.append(result["ndr_pps"])
    assert abs(found[0] - found[1]) <= 0.1 * max(found), f"two NDR searches disagree: {found}"


def test_a_kernel_loop_is_slower_than_a_guest_rings_loop(lab, namespaces):
    """Latency at 20 kpps through testpmd's macswap loop (a guest's rings, its forwarding lcore
    real-time) and through a TAP into a namespace whose kernel forwards the frames back, three
    trials of each, interleaved: every trial's percentiles ordered and non-zero, none lost, and
    the median of the kernel's p50s above the guest rings'. (Interleaved, so that a spell of
    load on the machine falls on both loops rather than on one.)"""
    # 4096 buffers: 200 ms of frames at 20 kpps, longer than the 50 ms of each second in which
    # even a real-time testpmd does not run (the kernel's real-time throttling).
    sock, tp = start_loop(lab, queue_size=4096, buffers=4096)
    ns = namespaces("lab")
    kernel_loop(ns, "labk0")
    gen = ["--port", f"gen:dst={LOOP_MAC},src={GEN_SRC},size=64,name=g"]
    trial = ["--rate", "20kpps", "--duration", "1"]
    p50s: dict[str, list[int]] = {"guest rings": [], "kernel": []}
    seen = []
    for i in range(3):
        with realtime_forwarding(tp):
            rings, _ = run_lab(lab, ["throughput", *gen, "--port", f"vhost:{sock},client,name=vm",
                                     "--port", "sink:name=s", *loop_fdb("vm"), *trial])
        kernel, _ = run_lab_in(lab, ns, ["throughput", *gen, "--port", "tap:labk0,name=k", "--port", "sink:name=s",
                                         *loop_fdb("k"), *trial])
        for what, result in (("guest rings", rings), ("kernel", kernel)):
            t = result["trials"][-1]
            seen.append(f"{what} {i + 1}: loss {t['loss']:.3%}, latency {t['latency']}")
            ctx = "\n".join(seen)
            assert t["loss"] <= 0.01 and t["received"] > 0, f"{what} loop lost frames\n{ctx}"
            check_latency_ordered(t["latency"], what)
            p50s[what].append(t["latency"]["p50_ns"])
    ctx = "\n".join(seen)
    print(ctx)
    assert h.median(p50s["kernel"]) > h.median(p50s["guest rings"]), ctx
