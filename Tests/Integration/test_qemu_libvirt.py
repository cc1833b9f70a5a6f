"""The QEMU command lines of docs/QEMU-LIBVIRT.md, run as documented, and socket permissions.

Run as root from the repository root, after `swift build -c release`:

    python3 -m pytest -v Tests/Integration/test_qemu_libvirt.py

Each test boots the test guest (198.18.0.2/24) with the documented QEMU command line
(documented_qemu.py says what is replaced) on a Ferry whose other port is a TAP moved into a
network namespace with 198.18.0.1/24, and makes the guest ping it:

* server mode: Ferry listens with `group=kvm,mode=0660`; QEMU runs as user nobody in group kvm
  and nothing else (setpriv --clear-groups), as libvirt runs QEMU as its own user. Then Ferry
  is restarted: QEMU's `reconnect=1` brings the NIC back and the guest pings again. Before
  that, a plain connect(2) as nobody:kvm is refused on a socket with Ferry's default
  permissions and accepted on the group/mode one.
* client mode: QEMU listens (`server=on,wait=off`), Ferry connects (`vhost:PATH,client`);
  Ferry is restarted and reconnects by itself.

Fails (does not skip) without root, QEMU, the guest image prerequisites or the Ferry binary.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import sys

import pytest

import documented_qemu as dq
import harness as h
import qemu_guest as q

HOST_IP, GUEST_IP = "198.18.0.1", "198.18.0.2"
QEMU_USER, QEMU_GROUP = "nobody", "kvm"


@pytest.fixture
def lab(guest_machine, namespaces, lab):
    """conftest.py's lab, which also holds the guests a test starts (they stop first, then
    conftest.py's lab stops Ferry, then the test's namespaces go)."""
    try:
        pwd.getpwnam(QEMU_USER)
        grp.getgrnam(QEMU_GROUP)
    except KeyError as exc:
        pytest.fail(f"cannot run the QEMU/libvirt tests:\n  user {QEMU_USER} or group {QEMU_GROUP} missing: {exc}",
                    pytrace=False)
    # QEMU as nobody writes its console log and command socket here.
    os.chmod(lab.dir.path, 0o777)
    lab.guests = []
    try:
        yield lab
    finally:
        for g in lab.guests:
            g.stop()


def tap_name() -> str:
    return f"fq{os.getpid() % 100000}"


def host_side(namespaces, tap: str) -> q.Netns:
    """The TAP Ferry just made, moved into a namespace with the host address."""
    ns = namespaces("qlv")
    ns.adopt(tap)
    ns.ip("addr", "add", f"{HOST_IP}/24", "dev", tap)
    return ns


def readopt(ns: q.Netns, tap: str):
    """A restarted Ferry makes its TAP anew in the root namespace: move it in again."""
    ns.adopt(tap)
    ns.ip("addr", "add", f"{HOST_IP}/24", "dev", tap)


def ping_host(guest: dq.DocumentedGuest, ferry: h.Ferry):
    def watch():
        return None if ferry.running() else f"Ferry exited\n{ferry.log_tail()}"
    guest.flush_neighbours()
    result = guest.ping(HOST_IP, count=3, wait=2, watch=watch)
    assert result.received == result.transmitted == 3, \
        f"{result}\n{guest.describe()}\n{ferry.log_tail()}"


def connect_as(user: str, group: str, path: str) -> subprocess.CompletedProcess:
    probe = ("import socket,sys\n"
             "s=socket.socket(socket.AF_UNIX)\n"
             "try:\n s.connect(sys.argv[1]); print('connected')\n"
             "except OSError as e:\n print(e.strerror); sys.exit(1)\n")
    return subprocess.run(["setpriv", f"--reuid={user}", f"--regid={group}", "--clear-groups",
                           sys.executable, "-c", probe, path], capture_output=True, text=True, timeout=10)


def qemu_uids(guest: dq.DocumentedGuest) -> set[int]:
    """The real uids of the QEMU processes serving this guest (found by its command socket)."""
    uids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/status") as f:
                status = f.read()
        except OSError:
            continue
        if argv and argv[0].endswith(b"qemu-system-x86_64") and any(guest.command_socket.encode() in a for a in argv):
            uids.add(int(status.split("\nUid:")[1].split()[0]))
    return uids


def test_server_mode_as_documented_with_qemu_as_another_user(lab, namespaces):
    sock = lab.path("vm0.sock")
    tap = tap_name()

    # Without the options, Ferry's socket admits only its own user (and root).
    plain = lab.ferry([f"vhost:{sock},name=vm0", "sink"])
    refused = connect_as(QEMU_USER, QEMU_GROUP, sock)
    assert refused.returncode == 1 and "Permission denied" in refused.stdout, \
        f"{QEMU_USER}:{QEMU_GROUP} could connect to a default socket: {refused.stdout}{refused.stderr}"
    plain.stop()

    ports = [f"vhost:{sock},name=vm0,group={QEMU_GROUP},mode=0660", f"tap:{tap},name=host"]
    ferry = lab.ferry(ports)
    st = os.stat(sock)
    assert (st.st_mode & 0o777, st.st_gid) == (0o660, grp.getgrnam(QEMU_GROUP).gr_gid), \
        f"socket mode {oct(st.st_mode)} gid {st.st_gid}"
    allowed = connect_as(QEMU_USER, QEMU_GROUP, sock)
    assert allowed.returncode == 0, f"{QEMU_USER}:{QEMU_GROUP} refused: {allowed.stdout}{allowed.stderr}"
    outsider = connect_as(QEMU_USER, "nogroup", sock)
    assert outsider.returncode == 1 and "Permission denied" in outsider.stdout, \
        f"{QEMU_USER} outside {QEMU_GROUP} could connect: {outsider.stdout}"
    ns = host_side(namespaces, tap)

    run_as = ["setpriv", f"--reuid={QEMU_USER}", f"--regid={QEMU_GROUP}", "--clear-groups"]
    guest = dq.DocumentedGuest("server-mode", sock, f"{GUEST_IP}/24", lab.dir.path, run_as=run_as)
    assert any("reconnect=1" in a for a in guest.documented), "the documented line lost reconnect=1"
    lab.guests.append(guest)
    guest.start()
    guest.wait_commands(watch=lambda: None if ferry.running() else "Ferry exited")
    assert qemu_uids(guest) == {pwd.getpwnam(QEMU_USER).pw_uid}, "QEMU did not run as the QEMU user"
    ping_host(guest, ferry)

    # Ferry restarts; QEMU's reconnect=1 re-attaches the NIC with no help.
    ferry.stop()
    ferry = lab.ferry(ports)
    readopt(ns, tap)
    h.wait_until(lambda: ferry.port("vm0")["state"] == "running", 30,
                 "QEMU to reconnect to the restarted Ferry (reconnect=1)")
    ping_host(guest, ferry)


def test_client_mode_as_documented(lab, namespaces):
    sock = lab.path("qemu-vm0.sock")
    tap = tap_name()
    guest = dq.DocumentedGuest("client-mode", sock, f"{GUEST_IP}/24", lab.dir.path)
    assert any("server=on,wait=off" in a for a in guest.documented)
    lab.guests.append(guest)
    guest.start()
    h.wait_until(lambda: os.path.exists(sock) or guest.proc.poll() is not None, 30,
                 f"QEMU to create {sock}")
    assert guest.proc.poll() is None, guest.describe()

    ports = [f"vhost:{sock},client,name=vm0", f"tap:{tap},name=host"]
    ferry = lab.ferry(ports)
    ns = host_side(namespaces, tap)
    guest.wait_commands(watch=lambda: None if ferry.running() else "Ferry exited")
    ping_host(guest, ferry)

    # Ferry restarts and reconnects to QEMU's socket by itself.
    ferry.stop()
    assert os.path.exists(sock), "Ferry removed QEMU's socket"
    ferry = lab.ferry(ports)
    readopt(ns, tap)
    h.wait_until(lambda: ferry.port("vm0")["state"] == "running", 30,
                 "the restarted Ferry to reconnect to QEMU")
    ping_host(guest, ferry)


def test_control_socket_permissions(lab):
    """--control-group/--control-mode let a group use `ferry ctl`; others are refused; an
    unknown group stops `ferry run` with a clear message."""
    control = lab.path("ctl.sock")
    ferry = lab.ferry(["sink:name=s"], control=control,
                      extra_args=["--control-group", QEMU_GROUP, "--control-mode", "0660"])
    st = os.stat(control)
    assert (st.st_mode & 0o777, st.st_gid) == (0o660, grp.getgrnam(QEMU_GROUP).gr_gid), oct(st.st_mode)

    def ctl_as(group: str) -> subprocess.CompletedProcess:
        return subprocess.run(["setpriv", f"--reuid={QEMU_USER}", f"--regid={group}", "--clear-groups",
                               ferry.binary, "ctl", "stats", "--json", "--control", control],
                              capture_output=True, text=True, timeout=10)
    member = ctl_as(QEMU_GROUP)
    assert member.returncode == 0 and '"ports"' in member.stdout, member.stderr
    outsider = ctl_as("nogroup")
    # 69: Ferry could not be reached (docs/OPERATIONS.md, "Exit status").
    assert outsider.returncode == 69 and "Permission denied" in outsider.stderr, outsider.stderr
    ferry.stop()

    bad = subprocess.run([ferry.binary, "run", "--port", "sink", "--control", control,
                          "--control-group", "no-such-group-ferry"], capture_output=True, text=True, timeout=20)
    assert bad.returncode != 0 and \
        "control socket: unknown group 'no-such-group-ferry' (not in the group database)" in bad.stderr, bad.stderr
