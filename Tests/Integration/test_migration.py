"""Live migration of a QEMU guest from one Ferry vhost-user port to another, while it pings.

Run as root from the repository root, after `swift build -c release`:

    python3 -m pytest -v -s Tests/Integration/test_migration.py

What runs (about 40 s under TCG on 2 cores, twice: split rings, then packed ones):

* Ferry with two vhost-user ports, `src` and `dst`, and a TAP port `t` moved into a namespace
  that holds 198.18.90.1/24;
* the source guest (tools/run-test-guest.sh, 198.18.90.2/24, 128 MiB of shared memfd memory,
  a QMP socket) boots on `src` and pings the namespace every 10 ms;
* the destination QEMU starts with the same options on `dst`, waiting with `-incoming
  unix:...`; QMP `migrate` on the source moves the guest across while its ping runs; the ping
  ends on the destination, whose console reports it.

Checked: the migration completes (QEMU's own dirty tracking of Ferry's writes needs Ferry's
dirty log: before it, QEMU refused, "Migration disabled: vhost-user backend lacks
VHOST_USER_PROTOCOL_F_LOG_SHMFD feature"); Ferry logged dirty pages on the source port; right
after the switch-over Ferry's FDB has the guest's MAC on `dst` and the namespace saw the RARP
broadcast Ferry sent for it (SEND_RARP); the last pings of the run, sent from the destination,
were all answered; no port broke. Printed: pings lost and the downtime QEMU measured.

Environment: FERRY_BIN, FERRY_QEMU, FERRY_GUEST_DIR as for the other guest tests. The test fails
(it does not skip) when root, QEMU, the guest build prerequisites or the Ferry binary are missing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from typing import Optional

import pytest

import harness as h
import qemu_guest as q
import qmp_client

IP_GUEST, IP_NS = "198.18.90.2", "198.18.90.1"
MAC = "52:54:00:18:90:02"
MEM_MIB = 128
PING_INTERVAL = 0.01
PING_COUNT = 1500         # 15 s at 10 ms: the migration (2-8 s here) happens in the middle
PING_HEAD_START = 2.0     # s of pinging from the source before the migration starts
MIGRATION_TIMEOUT = 60.0
# The pings at the end of the run all go from the destination: these many must all be answered.
TAIL_ANSWERED = 50


def ctl_json(ferry: h.Ferry, *args: str) -> dict:
    cmd = [ferry.binary, "ctl", *args, "--json", "--control", ferry.control]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    if res.returncode != 0:
        raise h.FerryError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
    return json.loads(res.stdout)


def ports_of(ferry: h.Ferry, mac: str) -> list[str]:
    return [e.get("port") for e in ctl_json(ferry, "show", "fdb")["fdb"] if e.get("mac", "").lower() == mac]


@pytest.mark.parametrize("packed", [False, True], ids=["split", "packed"])
def test_guest_migrates_between_ports_while_pinging(guest_machine, lab, namespaces, packed):
    """packed: both QEMUs have packed=on (VIRTIO_F_RING_PACKED), so Ferry logs the writes of
    packed rings: the used descriptors it writes back into the descriptor ring among them."""
    device_options = "packed=on" if packed else ""
    tap = f"fmig{os.getpid() % 100000}"
    src_sock, dst_sock = lab.path("src.sock"), lab.path("dst.sock")
    ferry = lab.ferry([f"vhost:{src_sock},name=src", f"vhost:{dst_sock},name=dst", f"tap:{tap},name=t"])
    h.wait_for_socket(src_sock, proc=ferry)
    h.wait_for_socket(dst_sock, proc=ferry)
    ns = namespaces("mig")
    ns.adopt(tap)
    ns.ip("addr", "add", f"{IP_NS}/24", "dev", tap)
    guests: list[q.Guest] = []
    capture: Optional[subprocess.Popen] = None
    pcap, capture_log = lab.path("rarp.pcap"), lab.path("tcpdump.log")

    def problem() -> Optional[str]:
        if ferry.exited():
            return f"Ferry exited ({ferry.returncode()})\n{ferry.log_tail()}"
        broken = [l for l in ferry.log_text().splitlines() if "device broken" in l]
        return f"a port broke: {broken}" if broken else None

    def context() -> str:
        parts = [ferry.log_tail(40)]
        try:
            parts.append(f"FDB: {ctl_json(ferry, 'show', 'fdb')['fdb']}")
        except Exception as exc:
            parts.append(f"<fdb unavailable: {exc}>")
        parts += [g.describe(15) for g in guests]
        return "\n".join(parts)

    try:
        src = q.Guest("mig-src", MAC, src_sock, f"{IP_GUEST}/24", lab.dir.path, mem=MEM_MIB, qmp=True,
                      device_options=device_options)
        guests.append(src)
        src.start().wait_commands(watch=problem)
        q.assert_all_answered(src.ping(IP_NS, 3, watch=problem), 3, "before: guest -> namespace", context)
        assert ports_of(ferry, MAC) == ["src"], context()

        migration = lab.path("migration.sock")
        dst = q.Guest("mig-dst", MAC, dst_sock, f"{IP_GUEST}/24", lab.dir.path, mem=MEM_MIB,
                      qmp=True, incoming=f"unix:{migration}", device_options=device_options)
        guests.append(dst)
        dst.start()
        dst_qmp = qmp_client.QMP(dst.qmp_socket)
        h.wait_until(lambda: dst_qmp.execute("query-status")["status"] == "inmigrate", 20,
                     "the destination QEMU waiting for the migration")
        h.wait_until(lambda: os.path.exists(migration), 20, f"{migration}")

        capture = ns.popen(["tcpdump", "-i", tap, "-nn", "-U", "-w", pcap, "ether proto 0x8035"], capture_log)
        h.wait_until(lambda: "listening on" in open(capture_log, errors="replace").read(), 10,
                     "tcpdump listening in the namespace")

        src_qmp = qmp_client.QMP(src.qmp_socket)
        # QEMU 7.2 caps a migration at 32 MiB/s by default; the stream stays on this machine.
        src_qmp.execute("migrate-set-parameters", **{"max-bandwidth": 1 << 30})
        pending = src.begin(f"ping {IP_NS} {PING_COUNT} 56 2 {PING_INTERVAL}")
        ping_id = pending[0]
        time.sleep(PING_HEAD_START)
        src_qmp.execute("migrate", uri=f"unix:{migration}")
        deadline = time.monotonic() + MIGRATION_TIMEOUT
        while True:
            info = src_qmp.execute("query-migrate")
            if info.get("status") in ("completed", "failed", "cancelled"):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"migration not done within {MIGRATION_TIMEOUT:.0f}s: {info}\n{context()}",
                            pytrace=False)
            time.sleep(0.02)
        completed_at = time.monotonic()
        assert info["status"] == "completed", f"migration {info['status']}: {info}\n{context()}"

        # Right after the switch-over: the guest's MAC is on dst (SEND_RARP, and the guest's pings).
        on_dst = h.wait_until(lambda: ports_of(ferry, MAC) == ["dst"], 5,
                              "the guest's MAC on port dst in Ferry's FDB")
        learned_after = time.monotonic() - completed_at
        assert on_dst
        assert dst_qmp.execute("query-status")["status"] == "running", context()

        # The ping ends on the destination: its result is on the destination's console.
        result_line = re.compile(rf"FERRY-PING-RESULT target=\S+ size=\d+ transmitted=(\d+) "
                                 rf"received=(\d+) id={re.escape(ping_id)}")
        m, text = dst.wait_for(result_line, PING_COUNT * PING_INTERVAL * 4 + 60, problem)
        transmitted, received = int(m.group(1)), int(m.group(2))
        answered = set(int(n) for n in re.findall(r"bytes from \S+ seq=(\d+)", text[:m.start()]))
        lost = transmitted - received
        ram = info.get("ram", {})
        report = (f"migration ({'packed' if packed else 'split'} rings): {lost} of {transmitted} pings lost "
                  f"(every {PING_INTERVAL * 1000:.0f} ms), "
                  f"QEMU downtime {info.get('downtime')} ms, total {info.get('total-time')} ms, "
                  f"setup {info.get('setup-time')} ms, {ram.get('transferred', 0) >> 20} MiB sent, "
                  f"{ram.get('dirty-sync-count')} dirty syncs; MAC on dst {learned_after * 1000:.0f} ms "
                  f"after QEMU said completed (load {os.getloadavg()[0]:.1f})")
        print("\n" + report)
        with open(lab.path("migration-report.txt"), "w") as f:
            f.write(report + "\n")

        assert transmitted == PING_COUNT, f"{report}\n{context()}"
        tail = set(range(transmitted - TAIL_ANSWERED, transmitted))
        assert tail <= answered, \
            f"pings sent from the destination went unanswered: {sorted(tail - answered)}\n{report}\n{context()}"
        assert lost < transmitted // 2, f"{report}\n{context()}"

        log = ferry.log_text()
        assert "vhost-user src: dirty logging on" in log, f"the source never logged:\n{context()}"
        layouts = {port: set(re.findall(rf"vhost-user {port}: features .*, (packed|split) rings\)", log))
                   for port in ("src", "dst")}
        want = "packed" if packed else "split"
        assert layouts == {"src": {want}, "dst": {want}}, f"rings negotiated: {layouts}\n{context()}"
        assert f"vhost-user dst: announcing {MAC}" in log, f"no SEND_RARP on dst:\n{context()}"
        os.killpg(capture.pid, signal.SIGINT)
        capture.wait(10)
        seen = subprocess.run(["tcpdump", "-r", pcap, "-nn", "-e"], capture_output=True, text=True,
                              timeout=10).stdout
        assert re.search(rf"{MAC} > ff:ff:ff:ff:ff:ff, ethertype Reverse ARP", seen), \
            f"no RARP broadcast from {MAC} reached the namespace: {seen!r}\n{context()}"

        # The source goes away: Ferry forgets what it learned on src, not the guest on dst.
        src_qmp.close()
        src.stop()
        h.wait_until(lambda: "vhost-user src: reset" in ferry.log_text(), 10, "Ferry to see the source go")
        assert ports_of(ferry, MAC) == ["dst"], context()
        dst.attach_commands()
        q.assert_all_answered(dst.ping(IP_NS, 3, watch=problem), 3, "after: guest -> namespace", context)
        assert problem() is None, problem()
        dst_qmp.close()
    finally:
        if capture is not None and capture.poll() is None:
            os.killpg(capture.pid, signal.SIGKILL)
            capture.wait(10)
        q.stop_keeping_logs(guests, lab.keep_logs)
