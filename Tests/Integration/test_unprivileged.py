"""Ferry as a non-root user with only the capabilities docs/OPERATIONS.md lists.

Run as root from the repository root, after `swift build -c release`:

    python3 -m pytest -v Tests/Integration/test_unprivileged.py

A system user is created for the test (useradd --system, removed again), /run/ferry is given
to it (as systemd's RuntimeDirectory= would), and `ferry run` — the embedded default — is
started through setpriv with exactly the unit's capabilities (packaging/ferry.service) as
inheritable, ambient and bounding sets, so that nothing else can be gained. Checked:

* /proc/PID/status: Ferry runs as that user, CapEff is exactly the documented set;
* a QEMU guest (root, as the documented server-mode line) on /run/ferry/vm0.sock pings the
  host side of ferry0 (moved into a namespace with 198.18.0.1/24): frames cross the switch;
* SIGTERM: exit status 0, the sockets and the TAP are gone;
* without CAP_NET_ADMIN, `ferry run` exits non-zero and says that the TAP needs it;
* without CAP_NET_RAW, a packet: port fails with a message naming CAP_NET_RAW.

The paths of the embedded default are fixed (as in test_embedded_default.py): a Ferry already
running it here makes the test fail, saying so, rather than disturbing it.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess

import pytest

import documented_qemu as dq
import harness as h
import qemu_guest as q

RUN_DIR = "/run/ferry"
VM0 = f"{RUN_DIR}/vm0.sock"
CONTROL = f"{RUN_DIR}/ferry.sock"
TAP = "ferry0"
HOST_IP, GUEST_IP = "198.18.0.1", "198.18.0.2"

# packaging/ferry.service, AmbientCapabilities= (bit numbers: linux/capability.h).
DOCUMENTED = {"net_admin": 12, "net_raw": 13, "ipc_lock": 14, "bpf": 39}


def unit_capabilities() -> set[str]:
    text = (h.REPO / "packaging" / "ferry.service").read_text()
    m = re.search(r"^AmbientCapabilities=(.*)$", text, re.M)
    bounding = re.search(r"^CapabilityBoundingSet=(.*)$", text, re.M)
    assert m and bounding and m.group(1).split() == bounding.group(1).split(), \
        "the unit's ambient and bounding sets differ"
    return {c.removeprefix("CAP_").lower() for c in m.group(1).split()}


def setpriv(user: str, caps: set[str]) -> list[str]:
    listed = ",".join(f"+{c}" for c in sorted(caps))
    sets = f"-all,{listed}" if caps else "-all"
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups",
            f"--inh-caps={sets}", f"--ambient-caps={sets}", f"--bounding-set={sets}"]


@pytest.fixture
def service_user(guest_machine, tmp_path):
    if os.geteuid() != 0:
        pytest.fail("needs root (creates a user, hands /run/ferry to it)", pytrace=False)
    for path in (VM0, CONTROL):
        if os.path.exists(path):
            pytest.fail(f"{path} exists: is a Ferry running its embedded default here? Stop it first")
    if os.path.exists(f"/sys/class/net/{TAP}"):
        pytest.fail(f"interface {TAP} exists already; remove it (ip link del {TAP}) first")
    name = f"ferryit{os.getpid() % 100000}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True)
    existed = os.path.isdir(RUN_DIR)
    saved = os.stat(RUN_DIR) if existed else None
    os.makedirs(RUN_DIR, exist_ok=True)
    user = pwd.getpwnam(name)
    os.chown(RUN_DIR, user.pw_uid, user.pw_gid)
    os.chmod(RUN_DIR, 0o755)
    try:
        yield name
    finally:
        subprocess.run(["ip", "link", "del", TAP], capture_output=True)
        for path in (VM0, CONTROL):
            if os.path.exists(path):
                os.unlink(path)
        if saved is not None:
            os.chown(RUN_DIR, saved.st_uid, saved.st_gid)
            os.chmod(RUN_DIR, saved.st_mode & 0o7777)
        else:
            shutil.rmtree(RUN_DIR, ignore_errors=True)
        subprocess.run(["userdel", name], capture_output=True)


def start(user: str, caps: set[str], log: str, args: list[str] = ()) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "FERRY_CONTROL"}
    with open(log, "wb") as out:
        return subprocess.Popen(setpriv(user, caps) + [h.ferry_binary(), "run", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_ready(proc: subprocess.Popen, log: str):
    h.wait_until(lambda: proc.poll() is not None or "ferry: ready" in open(log, errors="replace").read(),
                 20, "'ferry: ready' in the log")
    assert proc.poll() is None, f"ferry exited with {proc.returncode}:\n{open(log).read()}"


def status_field(pid: int, key: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    raise KeyError(key)


def test_the_unit_grants_exactly_the_documented_capabilities():
    assert unit_capabilities() == set(DOCUMENTED), \
        f"packaging/ferry.service grants {unit_capabilities()}, docs/OPERATIONS.md lists {set(DOCUMENTED)}"


def test_embedded_default_runs_unprivileged_with_the_documented_capabilities(service_user, tmp_path):
    caps = set(DOCUMENTED)
    log = str(tmp_path / "ferry.log")
    proc = start(service_user, caps, log)
    guest = None
    ns = None
    try:
        wait_ready(proc, log)
        user = pwd.getpwnam(service_user)
        assert status_field(proc.pid, "Uid").split()[:2] == [str(user.pw_uid)] * 2
        want = sum(1 << bit for bit in DOCUMENTED.values())
        for key in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
            assert int(status_field(proc.pid, key), 16) == want, \
                f"{key} {status_field(proc.pid, key)}, want {want:016x} ({sorted(caps)})"
        assert os.stat(VM0).st_uid == user.pw_uid

        ns = q.Netns("unpriv")
        ns.adopt(TAP)
        ns.ip("addr", "add", f"{HOST_IP}/24", "dev", TAP)
        workdir = str(tmp_path / "guest")
        os.makedirs(workdir)
        guest = dq.DocumentedGuest("server-mode", VM0, f"{GUEST_IP}/24", workdir)
        guest.start()
        guest.wait_commands(watch=lambda: None if proc.poll() is None else "Ferry exited")
        result = guest.ping(HOST_IP, count=3, wait=2)
        assert result.received == result.transmitted == 3, f"{result}\n{guest.describe()}\n{open(log).read()[-3000:]}"
        stats = h.ferry_stats(CONTROL)
        ports = {p["name"]: p for p in stats["ports"]}
        assert ports["vm0"]["rx_packets"] >= 3 and ports[TAP]["rx_packets"] >= 3, ports
    finally:
        if guest is not None:
            guest.stop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        if ns is not None:
            ns.delete()
    assert rc == 0, f"ferry exited with {rc}:\n{open(log).read()[-3000:]}"
    assert not os.path.exists(VM0) and not os.path.exists(CONTROL), "sockets left behind"


def test_without_cap_net_admin_it_says_the_tap_needs_it(service_user, tmp_path):
    log = str(tmp_path / "ferry.log")
    proc = start(service_user, set(DOCUMENTED) - {"net_admin"}, log)
    try:
        rc = proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("ferry run without CAP_NET_ADMIN did not exit")
    text = open(log).read()
    assert rc != 0 and "creating or attaching a TAP needs CAP_NET_ADMIN" in text, f"exit {rc}:\n{text}"


def test_without_cap_net_raw_a_packet_port_says_it_needs_it(service_user, tmp_path):
    log = str(tmp_path / "ferry.log")
    veth = f"fgv{os.getpid() % 100000}"
    subprocess.run(["ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "p"], check=True)
    try:
        subprocess.run(["ip", "link", "set", veth, "up"], check=True)
        proc = start(service_user, set(DOCUMENTED) - {"net_raw"}, log,
                     ["--control", CONTROL, "--port", f"packet:{veth},name=up", "--port", "sink"])
        try:
            wait_ready(proc, log)
            state = {p["name"]: p for p in h.ferry_stats(CONTROL)["ports"]}["up"]["state"]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
        assert "a packet socket needs CAP_NET_RAW" in state, state
    finally:
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
