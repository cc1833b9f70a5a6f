"""What a VM fleet does to a guest every day, through Ferry: memory plugged in and out while
traffic flows, reboots, driver reloads. Traffic comes back each time, and Ferry holds no more
than before: its open descriptors and mappings exactly, its own resident memory within a slack.

Run as root from the repository root, after `swift build -c release`:

    python3 -m pytest -v Tests/Integration/test_guest_lifecycle.py

One Ferry, two ports: `g`, the vhost-user port of a test guest (QEMU, TCG; a QMP socket to
drive it), and `t`, a TAP moved into a network namespace of the test's (the host, 198.18.23.1).

* memory_hotplug: the guest has slots for DIMMs (-m 256M,slots=2,maxmem=1G) and onlines what
  is plugged as movable memory (memhp_default_state=online_movable, so it can give it back).
  While the host pings the guest every 50 ms, QMP plugs a 128 MiB pc-dimm backed by a shared
  memfd (object-add memory-backend-memfd,share=on + device_add pc-dimm): QEMU hands Ferry the
  new region with ADD_MEM_REG, the guest sees one more memory block online. Then QMP unplugs
  it (device_del; the guest offlines the block and ejects it: DEVICE_DELETED; object-del):
  REM_MEM_REG, and the guest is back to its blocks. No ping is lost (one still in flight when
  ping stops is not counted) and Ferry drops nothing (it once did: rings restarted in a
  second pause after the table swap, and frames for the guest in between were `not_ready`);
  Ferry held one more descriptor and mapping while the DIMM was in, and exactly as many as
  before once it is out.
* reboots: the guest is reset 20 times, alternately by QMP system_reset (the machine's reset
  button: the driver never hears of it) and by `reboot -f` inside (the kernel shuts the
  device down first). After each boot the guest pings the host: every ping answered.
* driver_reloads: virtio_net (a module in the test guest, tools/build-test-guest.sh) unloaded
  and loaded again 20 times inside the guest: the driver resets the device and sets it up
  anew. After each reload: every ping answered.

Leak check (reboots, reloads, hot-plug): a snapshot of /proc/PID/{fd,maps,status} in a steady
state (guest up, a ping run just answered) before the repetitions and one after, in the same
state. Descriptors and mappings must match exactly; Ferry's own resident memory (RssAnon, see
process_resources.py) may grow by OWN_RSS_SLACK_KB, because the allocator keeps freed heap
pages resident and log lines are formatted on the heap (measured: RssAnon came back to the kB
after 20 reboots and 20 reloads, +104 kB after a plug; RssShmem, the guest pages Ferry touched,
grew by ~0.5 MiB and RssFile, code run for the first time, by up to 1.5 MiB: neither is a
leak). A leaked mapping or table per reset shows in the exact counts long before the slack.

Time: hot-plug 15 s, 20 reloads 16-24 s, 20 reboots ~100-150 s with an idle machine (a boot is
~5 s of the guest's CPU under TCG; qboot spares SeaBIOS's part), 390-590 s at a load of 10-18
on 2 cores. FERRY_LIFECYCLE_REPETITIONS=N runs N reboots and N reloads instead of 20.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from typing import Optional

import harness as h
import qemu_guest as qg
from process_resources import Resources, leaks
from qmp_client import QMP

HOST_IP, GUEST_IP = "198.18.23.1", "198.18.23.2"
GUEST_MAC = "52:54:00:18:23:02"
REPETITIONS = int(os.environ.get('FERRY_LIFECYCLE_REPETITIONS', '20'))
PINGS = 3
DIMM_MIB = 128            # one memory block of this guest (x86: 128 MiB)
OWN_RSS_SLACK_KB = 2048
_MEMORY = re.compile(r"FERRY-MEMORY total_kb=(\d+) online_blocks=(\d+)")


class GuestOnTap:
    """Ferry, the host's namespace and one guest with a QMP socket."""

    def __init__(self, lab: h.Lab, guests: list, namespaces, **guest_options):
        tap = f"fgl{os.getpid() % 10000}"
        sock = lab.path("g.sock")
        self.ferry = lab.ferry([f"vhost:{sock},name=g", f"tap:{tap},name=t"])
        h.wait_for_socket(sock, proc=self.ferry)
        self.host = namespaces("glife")
        self.host.adopt(tap)
        self.host.ip("addr", "add", f"{HOST_IP}/24", "dev", tap)
        self.guest = qg.Guest("ferry-gl", GUEST_MAC, sock, f"{GUEST_IP}/24", lab.dir.path,
                              qmp=True, **guest_options)
        guests.append(self.guest)
        self.guest.start()
        self.qmp = QMP(self.guest.qmp_socket)
        self.guest.wait_commands(watch=self.problem)

    def problem(self) -> Optional[str]:
        """A Ferry that died or a port marked broken ends any wait at once, with the reason."""
        if self.ferry.exited():
            return f"Ferry exited ({self.ferry.returncode()})\n{self.ferry.log_tail()}"
        if "device broken" in self.ferry.log_text():
            return f"Ferry broke the guest's device:\n{self.ferry.log_tail(30)}"
        return None

    def context(self) -> str:
        try:
            stats = self.ferry.stats()
        except Exception as exc:
            stats = f"<stats unavailable: {exc}>"
        return f"Ferry stats: {stats}\n{self.ferry.log_tail(30)}\n{self.guest.describe(20)}"

    def resources(self) -> Resources:
        return Resources.of(self.ferry.pid)

    def ping_host(self, what: str):
        result = self.guest.ping(HOST_IP, count=PINGS, watch=self.problem)
        qg.assert_all_answered(result, PINGS, what, self.context)

    def memory(self) -> tuple[int, int]:
        m = _MEMORY.search(self.guest.command("memory", watch=self.problem))
        assert m, f"no memory line from the guest\n{self.context()}"
        return int(m.group(1)), int(m.group(2))

    def ferry_log_count(self, text: str) -> int:
        return self.ferry.log_text().count(text)

    def assert_no_leak(self, before: Resources, what: str):
        after = self.resources()
        problems = leaks(before, after, OWN_RSS_SLACK_KB)
        print(f"{what}: before {before.summary()}; after {after.summary()}")
        assert not problems, f"after {what}, Ferry holds more than before:\n  " + \
            "\n  ".join(problems) + f"\n{self.context()}"


def answered_pings(log: str) -> list[int]:
    """The sequence numbers busybox ping saw answered, from its output."""
    with open(log) as f:
        return sorted({int(n) for n in re.findall(r"bytes from \S+ seq=(\d+)", f.read())})


def test_memory_hotplug_while_pinging(guest_machine, lab, guests, namespaces):
    rig = GuestOnTap(lab, guests, namespaces, memory_slots=(2, 1024))
    rig.ping_host("before the hot-plug")
    total, blocks = rig.memory()
    before = rig.resources()
    drops_before = {p: h.drop_total(rig.ferry.port(p)) for p in ("g", "t")}
    added, removed = "memory region added", "memory region removed"
    added0, removed0 = rig.ferry_log_count(added), rig.ferry_log_count(removed)

    # 50 ms apart for as long as the plug and the unplug take (~5-10 s under TCG).
    pinger = rig.host.popen(["busybox", "ping", "-c", "300", "-i", "0.05", "-W", "2", GUEST_IP],
                            lab.path("host-ping.log"))
    try:
        time.sleep(0.5)
        rig.qmp.execute("object-add", **{"qom-type": "memory-backend-memfd", "id": "hp0",
                                         "size": DIMM_MIB << 20, "share": True})
        rig.qmp.execute("device_add", driver="pc-dimm", id="dimm0", memdev="hp0")
        h.wait_until(lambda: rig.ferry_log_count(added) > added0 or rig.problem(), 30,
                     "Ferry's 'memory region added'")
        assert not rig.problem(), rig.problem()
        h.wait_until(lambda: rig.memory()[1] == blocks + 1, 30,
                     "the guest onlining the plugged memory block")
        plugged = rig.resources()
        rig.ping_host("with the DIMM plugged in")
        assert len(plugged.descriptors) == len(before.descriptors) + 1, \
            f"Ferry should hold the DIMM's memfd: {before.summary()} -> {plugged.summary()}"
        assert len(plugged.mappings) == len(before.mappings) + 1, \
            f"Ferry should map the DIMM: {before.summary()} -> {plugged.summary()}"

        rig.qmp.execute("device_del", id="dimm0")
        rig.qmp.wait_event("DEVICE_DELETED", 30, {"device": "dimm0"})
        rig.qmp.execute("object-del", id="hp0")
        h.wait_until(lambda: rig.ferry_log_count(removed) > removed0 or rig.problem(), 30,
                     "Ferry's 'memory region removed'")
        assert not rig.problem(), rig.problem()
        assert rig.memory() == (total, blocks), "the guest should be back to its own memory"
        answered_by_unplug = answered_pings(lab.path("host-ping.log"))
        time.sleep(1.0)   # pings after the unplug, too
    finally:
        if pinger.poll() is None:
            pinger.send_signal(signal.SIGINT)   # busybox ping prints its summary and exits
        try:
            pinger.wait(10)
        except subprocess.TimeoutExpired:
            pinger.kill()
            pinger.wait(10)
    # Stopping ping cuts off the requests still in flight (an emulated guest may take 100 ms
    # to answer): only a request with a later one answered counts as lost.
    out = open(lab.path("host-ping.log")).read()
    answered = answered_pings(lab.path("host-ping.log"))
    assert answered and answered_by_unplug and answered[-1] > answered_by_unplug[-1], \
        f"no ping answered after the unplug: {out[-500:]}\n{rig.context()}"
    lost = sorted(set(range(answered[-1] + 1)) - set(answered))
    print(f"host -> guest pings across plug and unplug: {len(answered)} answered, "
          f"lost before the last answer: {lost}")
    assert not lost, f"pings across the plug and unplug: seq {lost} lost, {len(answered)} " \
        f"answered\n{out[-1500:]}\n{rig.context()}"
    # Frames for the guest that found its rings stopped would be counted (not_ready).
    drops = {p: h.drop_total(rig.ferry.port(p)) - drops_before[p] for p in ("g", "t")}
    assert drops == {"g": 0, "t": 0}, f"Ferry dropped frames across the plug: {drops}\n{rig.context()}"
    rig.ping_host("after the unplug")
    rig.assert_no_leak(before, "a DIMM plugged in and out")


def test_reboots(guest_machine, lab, guests, namespaces):
    # A boot is ~5 s of the guest's CPU under TCG, and far longer in wall time when the machine
    # is loaded (20-30 s at a load of 15 on 2 cores); qboot spares SeaBIOS's share of each.
    rig = GuestOnTap(lab, guests, namespaces, allow_reboot=True, qemu_timeout=1800, qboot=True)
    rig.ping_host("the first boot")
    before = rig.resources()
    started = time.monotonic()
    for i in range(1, REPETITIONS + 1):
        offset = len(rig.guest.console())
        if i % 2:
            rig.qmp.execute("system_reset")
            how = "QMP system_reset"
        else:
            rig.guest.begin("reboot")
            how = "reboot -f in the guest"
        t0 = time.monotonic()
        rig.guest.wait_commands(watch=rig.problem, after=offset)
        t1 = time.monotonic()
        rig.ping_host(f"boot {i + 1}, after {how}")
        print(f"boot {i + 1} ({how}): {t1 - t0:.1f} s to commands, ping {time.monotonic() - t1:.1f} s")
    print(f"{REPETITIONS} reboots and pings in {time.monotonic() - started:.1f} s")
    boots = rig.guest.console().count("FERRY-GUEST-COMMANDS")
    assert boots == REPETITIONS + 1, f"{boots} boots seen, wanted {REPETITIONS + 1}"
    assert "Kernel panic" not in rig.guest.console()
    rig.assert_no_leak(before, f"{REPETITIONS} reboots")


def test_driver_reloads(guest_machine, lab, guests, namespaces):
    rig = GuestOnTap(lab, guests, namespaces, qboot=True)
    rig.ping_host("the first boot")
    before = rig.resources()
    started = time.monotonic()
    for i in range(1, REPETITIONS + 1):
        rig.guest.command("reload", watch=rig.problem)
        rig.ping_host(f"reload {i} of virtio_net")
    print(f"{REPETITIONS} driver reloads and pings in {time.monotonic() - started:.1f} s")
    rig.assert_no_leak(before, f"{REPETITIONS} reloads of virtio_net")
