"""Ferry's uplinks: a guest on the LAN through an AF_XDP or AF_PACKET port on the host's own NIC.

Run as root from the repository root, after `swift build -c release`:

    python3 -m pytest -v Tests/Integration/test_uplink.py

Topology (made by this module, removed at its end, also on failure):

    guest (QEMU, root namespace)            "hypervisor" namespace hv          namespace lan
    eth0 198.18.1.10/24 ── vhost-user ── Ferry ── hv0 198.18.1.1/24 ══ veth ══ lan0 198.18.1.2/24
                          socket (a file)   (runs in hv: `ip netns exec`)

hv0 is both Ferry's uplink (`--port xdp:hv0,name=uplink` or `--port packet:hv0,name=uplink`)
and the hypervisor's own interface: the host keeps pinging the LAN from 198.18.1.1 while Ferry
starts, forwards, stops or crashes (`busybox ping -i 0.05`, started before Ferry and stopped
after it), and must never lose a reply: the host's own traffic never goes through Ferry. Both
ends of the veth have one RX and one TX queue, as a NIC Ferry's one AF_XDP socket serves.

One guest serves the whole module: QEMU is a reconnecting vhost-user client (chardev
`reconnect=1`, tools/run-test-guest.sh --vhost-reconnect), so every Ferry a test starts on the
same socket gets the running guest back, the way a guest survives a back-end restart in
production. It boots once (~5 s under TCG) and is driven over its command channel
(qemu_guest.Guest).

Tests:

1. xdp: guest <-> LAN both ways (ARP both ways), the host's pings lose nothing; a tcpdump on hv0
   in hv sees none of the guest's ICMP (the XDP program redirects frames for the guest to
   Ferry's AF_XDP socket before the kernel's stack and its taps see them; copy-mode AF_XDP
   transmits go straight to the driver, past the taps too), but does see the host's own pings;
   the steering counters rise; `ctl show ports` names the XDP attach mode and copy mode; after
   SIGTERM hv0 has no XDP program.
2. kill -9 while the guest and the host ping the LAN: a second Ferry replaces the stale program
   (its log says so), there is exactly one program on hv0, the guest's pings resume and the
   host lost none; after SIGTERM no program is left.
3. packet: the same guest <-> LAN proof over AF_PACKET (host pinging too); hv0 is promiscuous
   while attached and not after.
4. bad input: an unknown interface, a NIC with a foreign XDP program (never removed), memlock
   too low without CAP_IPC_LOCK, and the uplink's interface deleted while Ferry runs (Ferry and
   its vhost port keep working, `ctl show ports` tells what happened to the uplink).

Tests 1 and 3 also check that the host's own unicast never reaches the switch: in a window
where only the host pings, Ferry takes nothing from the uplink and sends nothing to the guest.

Run time: ~40 s on 2 cores under TCG (one guest boot, ~3-5 s; test 2 ~14 s, test 1 ~8 s).

Environment: FERRY_BIN, FERRY_QEMU, FERRY_GUEST_DIR, FERRY_CLANG (a clang with the BPF target,
default /opt/swift/usr/bin/clang or clang on PATH; builds the "foreign" XDP program). The tests
fail (they do not skip) when something they need is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from typing import Iterable, Optional

import pytest

import harness as h
import qemu_guest as q

HV_IP, LAN_IP, GUEST_IP, SIDE_IP = "198.18.1.1", "198.18.1.2", "198.18.1.10", "198.18.1.3"
GUEST_MAC = "52:54:00:18:01:0a"
HV_IF, LAN_IF = "hv0", "lan0"
SIDE_TAP = "upside0"          # test 4's TAP, created by Ferry inside hv, moved to namespace side
HOST_PING_INTERVAL = "0.05"
# test 4's generator: 20 frames to an unknown MAC, flooded to every port (the sink counts them)
GEN_COUNT = 20
GEN_PORT = (f"gen:dst=02:00:00:00:01:02,src=02:00:00:00:01:01,size=64,count={GEN_COUNT},"
            f"name=g")
# The "foreign" XDP program of test 4: a program Ferry did not load, which it must never
# replace or remove. Its name is what Ferry's error has to mention.
FOREIGN_PROG = "foreign_pass"
FOREIGN_SRC = f"""\
__attribute__((section("xdp"), used)) int {FOREIGN_PROG}(void *ctx) {{ return 2; /* XDP_PASS */ }}
char _license[] __attribute__((section("license"), used)) = "GPL";
"""
CAP_IPC_LOCK = 14

# What Ferry says; tightened to the implementation's words (see the docstrings of the tests).
XDP_STATE = re.compile(r"^running \(xdp native, copy\)$")
STEER_PROG = "ferry_steer"
STALE_REPLACED = re.compile(r"replaced the XDP program a Ferry that is gone left behind")
FAILED_STATE = re.compile(r"^failed: ")
UPLINK_ERROR_STATE = re.compile(r"^running \(xdp native, copy, last error: .+\)$")


def clang() -> Optional[str]:
    for c in (os.environ.get("FERRY_CLANG"), "/opt/swift/usr/bin/clang", shutil.which("clang")):
        if c and os.access(c, os.X_OK):
            return c
    return None


# --------------------------------------------------------------------------- helpers


class Helper:
    """A process in a namespace (its own group), output in a log file."""

    def __init__(self, ns: q.Netns, cmd: list[str], log: str):
        self.log = log
        self.proc = ns.popen(cmd, log)

    def text(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def interrupt(self):
        """SIGINT (the process prints its summary and exits), SIGKILL after 10 s."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


class HostPing(Helper):
    """`busybox ping -i 0.05 TARGET` in a namespace until stop(): the hypervisor's own traffic."""

    def __init__(self, ns: q.Netns, target: str, log: str):
        super().__init__(ns, ["busybox", "ping", "-i", HOST_PING_INTERVAL, target], log)
        self.target = target
        self.result: Optional[dict] = None

    def answered(self) -> list[int]:
        return sorted({int(n) for n in re.findall(r"bytes from \S+ seq=(\d+)", self.text())})

    def wait_answering(self, timeout: float = 10.0):
        h.wait_until(lambda: self.answered() or self.proc.poll() is not None, timeout,
                     f"the first reply to the host's ping of {self.target}")
        if not self.answered():
            pytest.fail(f"the host's ping of {self.target} got no reply before Ferry even "
                        f"started:\n{self.text()[-2000:]}", pytrace=False)

    def stop(self) -> dict:
        """SIGINT (busybox prints its summary); {transmitted, received, lost, tail}."""
        if self.result is not None:
            return self.result
        self.interrupt()
        out = self.text()
        tx = re.search(r"(\d+) packets transmitted", out)
        answered = self.answered()
        transmitted = int(tx.group(1)) if tx else (max(answered) + 1 if answered else 0)
        # Every request up to the last answered one must have its reply; after it, only the one
        # request that may have been in flight when SIGINT came.
        last = max(answered) if answered else -1
        lost = sorted(set(range(last + 1)) - set(answered))
        lost += list(range(last + 1, transmitted - 1))
        self.result = {"transmitted": transmitted, "received": len(answered),
                       "lost": lost, "tail": "\n".join(out.splitlines()[-4:])}
        return self.result


class Capture(Helper):
    """tcpdump on an interface in a namespace; stop() returns the frames' lines."""

    def __init__(self, ns: q.Netns, link: str, bpf_filter: str, log: str,
                 extra: Iterable[str] = ()):
        super().__init__(ns, ["tcpdump", "-n", "-l", "-i", link, *extra, bpf_filter], log)
        h.wait_until(lambda: "listening on" in self.text() or self.proc.poll() is not None, 15,
                     "tcpdump to start")
        if self.proc.poll() is not None:
            pytest.fail(f"tcpdump exited ({self.proc.returncode}): {self.text()}", pytrace=False)

    def stop(self) -> list[str]:
        if self.proc.poll() is None:
            time.sleep(0.3)    # the last frames' lines
        self.interrupt()
        return [line for line in self.text().splitlines()
                if re.match(r"^\d\d:\d\d:\d\d\.\d+ ", line)]


class Uplink:
    """The module's namespaces, veth, guest and helper processes; one Ferry at a time."""

    def __init__(self, keep_logs: str):
        self.lab = h.Lab("up", keep_logs=keep_logs)
        self.keep_logs = keep_logs
        self.namespaces: list[q.Netns] = []
        self.helpers: list[Helper] = []
        self.guest: Optional[q.Guest] = None
        self.ferry: Optional[h.Ferry] = None
        self.sock = self.lab.path("vm.sock")
        try:
            self.hv = self._netns("hv")
            self.lan = self._netns("lan")
            self.fresh_veth()
        except BaseException:
            self.close()
            raise

    def _netns(self, tag: str) -> q.Netns:
        ns = q.Netns(tag)
        self.namespaces.append(ns)
        return ns

    # -- the wire

    def fresh_veth(self):
        """hv0 (hv, 198.18.1.1/24) <-> lan0 (lan, 198.18.1.2/24), one queue each way, made
        anew: whatever a test left on hv0 (a program, promiscuity) or deleted is not the next
        test's problem."""
        self.hv.ip("link", "del", HV_IF, check=False)
        self.hv.ip("link", "add", HV_IF, "numtxqueues", "1", "numrxqueues", "1", "type", "veth",
                   "peer", "name", LAN_IF, "numtxqueues", "1", "numrxqueues", "1",
                   "netns", self.lan.name)
        self.hv.ip("addr", "add", f"{HV_IP}/24", "dev", HV_IF)
        self.lan.ip("addr", "add", f"{LAN_IP}/24", "dev", LAN_IF)
        self.hv.ip("link", "set", HV_IF, "up")
        self.lan.ip("link", "set", LAN_IF, "up")

    def link(self) -> dict:
        """`ip -d -j link show hv0` in hv."""
        return json.loads(self.hv.ip("-d", "-j", "link", "show", HV_IF).stdout)[0]

    def xdp_programs(self) -> list[dict]:
        """The XDP programs attached to hv0 ({id, name, mode}), from ip's JSON."""
        xdp = self.link().get("xdp")
        if not xdp:
            return []
        attached = xdp.get("attached") or [{"mode": xdp.get("mode"), "prog": xdp.get("prog")}]
        return [dict(a["prog"], mode=a.get("mode")) for a in attached if a.get("prog")]

    def ip_link_text(self) -> str:
        return self.hv.ip("link", "show", HV_IF, check=False).stdout

    # -- processes

    def host_ping(self) -> HostPing:
        p = HostPing(self.hv, LAN_IP, self.lab._log("host-ping"))
        self.helpers.append(p)
        p.wait_answering()
        return p

    def capture(self, bpf_filter: str, extra: Iterable[str] = ()) -> Capture:
        c = Capture(self.hv, HV_IF, bpf_filter, self.lab._log("tcpdump"), extra)
        self.helpers.append(c)
        return c

    def new_ferry(self, uplink: Optional[str], extra_ports: Iterable[str] = (),
                  wrapper: Iterable[str] = (), vhost: bool = True) -> h.Ferry:
        """A Ferry in hv (not started): `vhost:SOCK,name=vm` (the guest), the uplink, more."""
        ports = [f"vhost:{self.sock},name=vm"] if vhost else []
        if uplink:
            ports.append(uplink)
        ports += list(extra_ports)
        f = self.lab.ferry(ports, start=False, netns=self.hv.name, wrapper=wrapper)
        self.ferry = f
        return f

    def start_ferry(self, uplink: str, extra_ports: Iterable[str] = ()) -> h.Ferry:
        f = self.new_ferry(uplink, extra_ports)
        try:
            f.start()
        except h.FerryError as exc:
            pytest.fail(f"Ferry did not start with --port {uplink}: {exc}", pytrace=False)
        return f

    def ports(self, ferry: Optional[h.Ferry] = None) -> dict:
        return {p["name"]: p for p in (ferry or self.ferry).ctl("show", "ports")["ports"]}

    def problem(self) -> Optional[str]:
        f = self.ferry
        if f is None or f.exited():
            rc = f.returncode() if f else None
            return f"Ferry exited ({rc})\n{f.log_tail() if f else ''}"
        return None

    def guest_connected(self, timeout: float = 30.0):
        """Boot the guest on the first call; on later ones wait until QEMU has reconnected to
        the new Ferry (port vm running)."""
        if self.guest is None:
            h.wait_for_socket(self.sock, proc=self.ferry)
            self.guest = q.Guest("uplink", GUEST_MAC, self.sock, f"{GUEST_IP}/24",
                                 self.lab.dir.path, vhost_reconnect=1)
            self.guest.start()
            self.guest.wait_commands(watch=self.problem)

        def running():
            if self.ferry.exited():
                raise h.FerryError(f"Ferry exited ({self.ferry.returncode()})\n"
                                   f"{self.ferry.log_tail()}")
            return self.ports()["vm"]["state"] == "running"
        try:
            h.wait_until(running, timeout, "the guest's QEMU to (re)connect: port vm running")
        except (TimeoutError, h.FerryError) as exc:
            pytest.fail(f"{exc}\n{self.context()}", pytrace=False)

    def guest_reaches(self, target: str, timeout: float = 30.0):
        """Single pings from the guest until one is answered (the link just came up, ARP)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.guest.ping(target, 1, wait=1, watch=self.problem).received == 1:
                return
            if time.monotonic() >= deadline:
                pytest.fail(f"the guest never reached {target} within {timeout:.0f}s\n"
                            f"{self.context()}", pytrace=False)

    def steering(self, name: str = "uplink") -> dict:
        """The XDP program's counters from `ctl show ports --json` (or `ctl stats --json`)."""
        port = self.ports()[name]
        if "steering" not in port:
            port = h.port_stats(self.ferry.stats(), name)
        if "steering" not in port:
            pytest.fail(f"no \"steering\" object for xdp port {name} in `ferry ctl show ports "
                        f"--json` or `ferry ctl stats --json`: {port}", pytrace=False)
        return port["steering"]

    def context(self, what: str = "") -> str:
        parts = [what] if what else []
        f = self.ferry
        if f is not None and not f.exited():
            for args in (("show", "ports"), ("stats",), ("show", "fdb")):
                try:
                    parts.append(f"ferry ctl {' '.join(args)}: {json.dumps(f.ctl(*args))}")
                except Exception as exc:
                    parts.append(f"<ferry ctl {' '.join(args)} failed: {exc}>")
        if f is not None:
            parts.append(f.log_tail(30))
        parts.append(f"hv: {self.ip_link_text()}")
        if self.guest is not None:
            parts.append(self.guest.describe(15))
        return "\n".join(parts)

    def stop_ferry(self, sig: int = signal.SIGTERM) -> Optional[int]:
        f, self.ferry = self.ferry, None
        return f.stop(sig=sig) if f is not None else None

    def close(self):
        for p in self.helpers:
            try:
                p.kill()
            except Exception:
                pass
        if self.guest is not None:
            self.guest.stop()
            os.makedirs(self.keep_logs, exist_ok=True)
            for f in (self.guest.log, self.guest.err):
                if os.path.exists(f):
                    shutil.copy(f, self.keep_logs)
        self.lab.close()      # every Ferry (a TAP goes with its descriptor)
        for ns in self.namespaces:
            ns.delete()       # hv0/lan0 and anything moved in go with them


def assert_host_lost_nothing(ping: HostPing, env: Uplink, what: str):
    """Call after Ferry stopped: 5 more replies (the host's path works without Ferry as well),
    then stop the ping; every request must have been answered."""
    n = len(ping.answered())
    try:
        h.wait_until(lambda: len(ping.answered()) >= n + 5, 5, "5 more replies to the host")
    except TimeoutError:
        pass    # reported below, with the ping's output
    r = ping.stop()
    assert r["received"] >= n + 5 and not r["lost"], \
        f"{what}: the host's own pings of the LAN ({HV_IP} -> {LAN_IP}, every " \
        f"{HOST_PING_INTERVAL} s, from before Ferry started until after it stopped) must all " \
        f"be answered: {r['received']} of {r['transmitted']} answered, lost seq {r['lost']}\n" \
        f"{r['tail']}\n{env.context()}"


def assert_answered(result, count: int, what: str, env: Uplink):
    q.assert_all_answered(result, count, what, env.context)


def guest_and_lan_meet(env: Uplink, count: int = 5):
    """ARP and ping both ways: guest -> LAN, then LAN -> guest, neighbour tables flushed."""
    env.guest.flush_neighbours()
    assert_answered(env.guest.ping(LAN_IP, count, watch=env.problem), count,
                    f"guest -> LAN ({GUEST_IP} -> {LAN_IP})", env)
    env.lan.ip("neigh", "flush", "dev", LAN_IF)
    assert_answered(env.lan.ping(GUEST_IP, count), count,
                    f"LAN -> guest ({LAN_IP} -> {GUEST_IP})", env)


def assert_host_traffic_stays_out(env: Uplink, host: HostPing, seconds: float = 1.5):
    """While only the host pings the LAN, nothing reaches the guest: the host's unicast (its
    requests out, the LAN's replies in) is neither steered nor copied to Ferry. At most 2 frames
    are allowed (a broadcast ARP of the LAN's, which a switch must flood)."""
    ferry = env.ferry
    vm0, up0, n0 = ferry.port("vm"), ferry.port("uplink"), len(host.answered())
    time.sleep(seconds)
    vm1, up1, n1 = ferry.port("vm"), ferry.port("uplink"), len(host.answered())
    to_guest = vm1["tx_packets"] - vm0["tx_packets"]
    from_uplink = up1["rx_packets"] - up0["rx_packets"]
    assert n1 - n0 >= 10, f"the host's ping should have gone on meanwhile: {host.text()[-500:]}"
    assert to_guest <= 2 and from_uplink <= 2, \
        f"in {seconds} s of only the host pinging the LAN ({n1 - n0} replies), Ferry took " \
        f"{from_uplink} frames from the uplink and sent {to_guest} to the guest: the host's own " \
        f"unicast must stay out of the switch\n{env.context()}"
    print(f"\nhost only, {seconds} s: {n1 - n0} host ping replies; {from_uplink} frames from the "
          f"uplink, {to_guest} to the guest")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def env(guest_machine, tmp_path_factory):
    problems = []
    for tool in ("setpriv", "prlimit"):
        if not shutil.which(tool):
            problems.append(f"{tool} not found: install util-linux")
    if not clang():
        problems.append("no clang with the BPF target (for the foreign XDP program): set "
                        "FERRY_CLANG or install clang")
    if problems:
        pytest.fail("cannot run the uplink tests:\n  " + "\n  ".join(problems), pytrace=False)
    e = Uplink(str(tmp_path_factory.mktemp("uplink")))
    try:
        yield e
    finally:
        e.close()


@pytest.fixture
def uplink(env):
    """The module's topology with a fresh hv0 and no Ferry left running after the test."""
    env.fresh_veth()
    try:
        yield env
    finally:
        if env.ferry is not None:
            env.stop_ferry()
        for p in env.helpers:
            try:
                p.kill()
            except Exception:
                pass
        env.helpers.clear()


# --------------------------------------------------------------------------- 1. AF_XDP


def test_xdp_guest_meets_lan_and_host_keeps_its_traffic(uplink: Uplink):
    env = uplink
    host = env.host_ping()
    ferry = env.start_ferry("xdp:hv0,name=uplink")
    env.guest_connected()

    ports = env.ports()
    assert XDP_STATE.match(ports["uplink"]["state"]), \
        f"`ctl show ports --json`: wanted the xdp port's state to name the attach and copy " \
        f"mode ({XDP_STATE.pattern}; a veth has native XDP, no zero-copy), got " \
        f"{ports['uplink']['state']!r}\n{env.context()}"
    table = ferry.ctl_text("show", "ports")
    assert re.search(r"(?m)^uplink +\d+ +xdp +running \(xdp native, copy\) ", table), \
        f"`ctl show ports` should list the uplink as `running (xdp native, copy)`:\n{table}"
    progs = env.xdp_programs()
    assert [p["name"] for p in progs] == [STEER_PROG], \
        f"wanted Ferry's one XDP program, {STEER_PROG}, on {HV_IF}: {env.ip_link_text()}"

    env.guest_reaches(LAN_IP)
    assert_host_traffic_stays_out(env, host)
    # Capture every ICMP frame on hv0 in both directions: the guest's must be missing, the
    # host's must be there (so the capture works). Frames for the guest are redirected to the
    # AF_XDP socket before the stack and its taps; the guest's own frames leave through the
    # socket's TX ring, which in copy mode hands them straight to the driver
    # (__dev_direct_xmit), past the taps as well - hence no `-Q in`.
    cap = env.capture("icmp")
    s0 = env.steering()
    n = 10
    guest_and_lan_meet(env, n)
    s1 = env.steering()
    lines = cap.stop()
    guest_lines = [line for line in lines if GUEST_IP in line]
    host_lines = [line for line in lines if HV_IP in line]
    assert not guest_lines, \
        f"the guest's ICMP reached the hypervisor's kernel on {HV_IF} (tcpdump in hv saw " \
        f"{len(guest_lines)} frames), it should have been steered to Ferry:\n" \
        + "\n".join(guest_lines[:10]) + f"\n{env.context()}"
    assert len(host_lines) >= 10, \
        f"tcpdump on {HV_IF} should have seen the host's own pings (the capture works), saw " \
        f"{len(host_lines)} lines:\n" + "\n".join(lines[-10:])
    steered = s1["steered"] - s0["steered"]
    passed = s1["passed"] - s0["passed"]
    # the LAN's n requests to the guest and its n replies to the guest's requests, at least
    assert steered >= 2 * n, \
        f"steering: wanted >= {2 * n} frames steered to Ferry while guest and LAN pinged " \
        f"each other, saw {steered} (before {s0}, after {s1})\n{env.context()}"
    assert passed >= 10, \
        f"steering: the host's ping replies should have been passed to the kernel, counters " \
        f"before {s0}, after {s1}"

    rc = env.stop_ferry(signal.SIGTERM)
    assert rc == 0, f"Ferry's exit status after SIGTERM: {rc}\n{ferry.log_tail()}"
    assert env.xdp_programs() == [], \
        f"after SIGTERM Ferry must have detached its XDP program from {HV_IF}:\n" \
        f"{env.ip_link_text()}"
    assert_host_lost_nothing(host, env, "xdp uplink")


# --------------------------------------------------------------------------- 2. kill -9


def test_xdp_kill9_restart_replaces_stale_program(uplink: Uplink):
    env = uplink
    host = env.host_ping()
    first = env.start_ferry("xdp:hv0,name=uplink")
    env.guest_connected()
    env.guest_reaches(LAN_IP)
    old = env.xdp_programs()
    assert [p["name"] for p in old] == [STEER_PROG], \
        f"wanted Ferry's one XDP program, {STEER_PROG}, on {HV_IF}: {env.ip_link_text()}"

    count = 60     # 12 s of pings at 0.2 s: the crash and restart fall inside
    pending = env.guest.ping_begin(LAN_IP, count, wait=2)
    time.sleep(2.5)
    first.crash()
    env.ferry = None
    time.sleep(0.5)
    after_crash = env.xdp_programs()
    assert [p["id"] for p in after_crash] == [old[0]["id"]], \
        f"after kill -9 the program stays attached (nothing detaches it): before " \
        f"{old}, now {after_crash}"
    time.sleep(1.0)

    second = env.start_ferry("xdp:hv0,name=uplink")
    log = second.log_text()
    assert STALE_REPLACED.search(log), \
        f"the second Ferry's log should say it replaced its stale XDP program " \
        f"({STALE_REPLACED.pattern}):\n{second.log_tail()}"
    progs = env.xdp_programs()
    assert len(progs) == 1 and progs[0]["id"] != old[0]["id"] \
        and progs[0]["name"] == STEER_PROG, \
        f"wanted exactly one XDP program on {HV_IF}, the new Ferry's {STEER_PROG} (the stale " \
        f"one was id {old[0]['id']}): {progs}\n{env.ip_link_text()}"
    env.guest_connected()

    # Typically not one of the guest's pings is lost: while no back-end runs, its requests wait
    # in its TX ring, and the new Ferry resumes the ring where the dead one left it.
    result = env.guest.ping_finish(pending, count * 0.2 + 30, watch=env.problem)
    tail = set(range(count - 15, count))
    assert tail <= set(result.answered), \
        f"the guest's pings should have resumed after the restart: wanted its last 15 " \
        f"(seq {count - 15}..{count - 1}) answered; answered: {result.answered} ({result})\n" \
        f"{env.context()}"
    assert_answered(env.lan.ping(GUEST_IP, 5), 5, "after the restart: LAN -> guest", env)

    rc = env.stop_ferry(signal.SIGTERM)
    assert rc == 0, f"Ferry's exit status after SIGTERM: {rc}\n{second.log_tail()}"
    assert env.xdp_programs() == [], \
        f"after SIGTERM no XDP program may be left on {HV_IF}:\n{env.ip_link_text()}"
    assert_host_lost_nothing(host, env, "kill -9 and restart of the xdp uplink")
    print(f"\nguest's pings across kill -9 + restart: {result}; lost seq "
          f"{sorted(set(range(count)) - set(result.answered))}")


# --------------------------------------------------------------------------- 3. AF_PACKET


def test_packet_guest_meets_lan_and_host_keeps_its_traffic(uplink: Uplink):
    env = uplink
    host = env.host_ping()
    ferry = env.start_ferry("packet:hv0,name=uplink")
    env.guest_connected()
    state = env.ports()["uplink"]["state"]
    assert state.startswith("running"), f"packet uplink state {state!r}\n{env.context()}"
    assert env.link().get("promiscuity", 0) >= 1, \
        f"{HV_IF} should be promiscuous while the packet port is attached:\n" \
        f"{env.ip_link_text()}"
    assert env.xdp_programs() == [], f"a packet port attaches no XDP program: {env.ip_link_text()}"

    env.guest_reaches(LAN_IP)
    assert_host_traffic_stays_out(env, host)
    before = ferry.port("uplink")
    n = 10
    # No tcpdump proof here: an AF_PACKET port is itself a tap on hv0, so the frames it takes
    # and sends are exactly what tcpdump would see too.
    guest_and_lan_meet(env, n)
    after = ferry.port("uplink")
    rx = after["rx_packets"] - before["rx_packets"]
    tx = after["tx_packets"] - before["tx_packets"]
    assert rx >= 2 * n and tx >= 2 * n, \
        f"the uplink should have carried both directions' {n} requests + {n} replies: rx " \
        f"+{rx}, tx +{tx}\n{env.context()}"

    rc = env.stop_ferry(signal.SIGTERM)
    assert rc == 0, f"Ferry's exit status after SIGTERM: {rc}\n{ferry.log_tail()}"
    assert env.link().get("promiscuity", 0) == 0, \
        f"{HV_IF} must not stay promiscuous after Ferry stopped:\n{env.ip_link_text()}"
    assert_host_lost_nothing(host, env, "packet uplink")


# --------------------------------------------------------------------------- 4. bad input


def start_with_failing_uplink(env: Uplink, uplink: str, expect: re.Pattern,
                              wrapper: Iterable[str] = ()) -> h.Ferry:
    """Ferry with the guest's vhost port, a generator, a sink and `uplink`, which cannot be
    opened: the uplink must be `failed: REASON` (REASON matching `expect`) in `ctl show
    ports`, while the other ports work (the sink counts the generator's frames, the guest
    reconnects). Returns the running Ferry."""
    ferry = env.new_ferry(uplink, [GEN_PORT, "sink:name=s"], wrapper=wrapper)
    ferry.launch()
    try:
        h.wait_until(lambda: ferry.exited() or "ferry: ready" in ferry.log_text(), 20,
                     "Ferry to be ready or to exit")
    except TimeoutError as exc:
        pytest.fail(f"{exc}\n{ferry.log_tail()}", pytrace=False)
    if ferry.exited():
        pytest.fail(f"`ferry run ... --port {uplink}` exited ({ferry.returncode()}); a port "
                    f"that cannot be opened should fail alone while the other ports work:\n"
                    f"{ferry.log_tail()}", pytrace=False)
    state = env.ports()["uplink"]["state"]
    assert FAILED_STATE.match(state) and expect.search(state), \
        f"--port {uplink}: wanted the uplink's state {FAILED_STATE.pattern}... matching " \
        f"{expect.pattern!r}, got {state!r}\n{env.context()}"
    assert expect.search(ferry.log_text()), \
        f"Ferry's log should say why the uplink failed ({expect.pattern!r}):\n{ferry.log_tail()}"
    h.wait_until(lambda: ferry.port("s")["tx_packets"] >= GEN_COUNT, 10,
                 "the sink to count the generator's frames")
    env.guest_connected()
    return ferry


UNKNOWN_INTERFACE = ("no such interface 'nosuch0' (an uplink attaches to an existing "
                     "one): No such device (errno 19)")


@pytest.mark.parametrize("kind", ["xdp", "packet"])
def test_unknown_interface(uplink: Uplink, kind: str):
    env = uplink
    start_with_failing_uplink(env, f"{kind}:nosuch0,name=uplink",
                              re.compile(re.escape(UNKNOWN_INTERFACE)))
    assert env.stop_ferry() == 0


def test_foreign_xdp_program_is_left_alone(uplink: Uplink):
    env = uplink
    src, obj = env.lab.path("foreign.c"), env.lab.path("foreign.o")
    with open(src, "w") as f:
        f.write(FOREIGN_SRC)
    res = subprocess.run([clang(), "-O2", "-target", "bpf", "-c", src, "-o", obj],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"clang -target bpf failed: {res.stderr}"
    env.hv.ip("link", "set", "dev", HV_IF, "xdp", "obj", obj, "sec", "xdp")
    try:
        foreign = env.xdp_programs()
        assert [p["name"] for p in foreign] == [FOREIGN_PROG], env.ip_link_text()
        host = env.host_ping()
        start_with_failing_uplink(env, "xdp:hv0,name=uplink", re.compile(re.escape(
            f"interface {HV_IF} already runs XDP program '{FOREIGN_PROG}' (id "
            f"{foreign[0]['id']}), which is not Ferry's; Ferry never removes a program that is "
            f"not its own: detach it (ip link set dev {HV_IF} xdp off) or give Ferry another "
            f"interface")))
        assert env.xdp_programs() == foreign, \
            f"Ferry must not touch a foreign XDP program: before {foreign}, now " \
            f"{env.xdp_programs()}"
        assert env.stop_ferry() == 0
        assert env.xdp_programs() == foreign, \
            f"the foreign XDP program must survive Ferry's stop: before {foreign}, now " \
            f"{env.xdp_programs()}"
        assert_host_lost_nothing(host, env, "foreign XDP program on the uplink")
    finally:
        env.hv.ip("link", "set", "dev", HV_IF, "xdp", "off", check=False)


def test_memlock_too_low(uplink: Uplink):
    env = uplink
    # RLIMIT_MEMLOCK 64 KiB (soft and hard) and no CAP_IPC_LOCK: the UMEM cannot be locked.
    # Root keeps CAP_IPC_LOCK through exec unless it leaves both the bounding set (caps an exec
    # can grant) and the inheritable set; CAP_SYS_RESOURCE (raising the hard limit) goes too,
    # so the limit is one Ferry cannot lift either.
    wrapper = ["prlimit", "--memlock=65536:65536", "setpriv",
               "--bounding-set", "-ipc_lock,-sys_resource",
               "--inh-caps", "-ipc_lock,-sys_resource"]
    probe = env.hv.exec(wrapper + ["sh", "-c", "grep CapEff /proc/self/status; ulimit -l"])
    cap_eff = int(re.search(r"CapEff:\s*([0-9a-f]+)", probe.stdout).group(1), 16)
    assert not cap_eff & (1 << CAP_IPC_LOCK) and probe.stdout.split()[-1] == "64", \
        f"the wrapper should remove CAP_IPC_LOCK and limit memlock to 64 KiB: {probe.stdout}"
    ferry = start_with_failing_uplink(env, "xdp:hv0,name=uplink", re.compile(
        rf"{HV_IF}: registering the \d+ KiB UMEM needs that much locked memory; RLIMIT_MEMLOCK "
        rf"is 64 KiB\. Raise it \(ulimit -l, LimitMEMLOCK= in a systemd unit\) or give Ferry "
        rf"CAP_IPC_LOCK: No buffer space available \(errno 105\)"), wrapper=wrapper)
    with open(f"/proc/{ferry.pid}/status") as f:
        status = f.read()
    cap_eff = int(re.search(r"CapEff:\s*([0-9a-f]+)", status).group(1), 16)
    assert not cap_eff & (1 << CAP_IPC_LOCK), f"Ferry still has CAP_IPC_LOCK: {status}"
    assert env.xdp_programs() == [], \
        f"a failed xdp port must leave no program behind: {env.ip_link_text()}"
    assert env.stop_ferry() == 0


def test_interface_disappears_while_attached(uplink: Uplink):
    env = uplink
    side = q.Netns("side")       # the TAP's namespace: the guest's peer once hv0 is gone
    try:
        ferry = env.start_ferry("xdp:hv0,name=uplink", [f"tap:{SIDE_TAP},name=side"])
        side.adopt(SIDE_TAP, source=env.hv)
        side.ip("addr", "add", f"{SIDE_IP}/24", "dev", SIDE_TAP)
        env.guest_connected()
        env.guest_reaches(LAN_IP)
        env.guest_reaches(SIDE_IP)

        env.hv.ip("link", "del", HV_IF)       # its peer lan0 goes with it
        # The guest goes on with the TAP's namespace; its ARP for the LAN is flooded to the
        # uplink too, which is when the uplink's socket calls fail.
        assert_answered(env.guest.ping(SIDE_IP, 5, watch=env.problem), 5,
                        "guest -> TAP namespace after the uplink's interface was deleted", env)
        env.guest.flush_neighbours()
        env.guest.ping(LAN_IP, 1, watch=env.problem)

        def uplink_error():
            return UPLINK_ERROR_STATE.match(env.ports()["uplink"]["state"])
        try:
            h.wait_until(uplink_error, 15, "the uplink's state to tell of the lost interface")
        except TimeoutError as exc:
            pytest.fail(f"{exc}: wanted {UPLINK_ERROR_STATE.pattern}\n{env.context()}",
                        pytrace=False)
        assert not ferry.exited(), f"Ferry must survive its uplink's interface:\n" \
                                   f"{ferry.log_tail()}"
        before = ferry.port("vm")
        assert_answered(env.guest.ping(SIDE_IP, 5, watch=env.problem), 5,
                        "guest -> TAP namespace, the uplink's error known", env)
        assert ferry.port("vm")["rx_packets"] >= before["rx_packets"] + 5, env.context()
        assert env.ports()["vm"]["state"] == "running", env.context()
        print(f"\nuplink after `ip link del {HV_IF}`: {env.ports()['uplink']['state']!r}")
        assert env.stop_ferry() == 0
    finally:
        if env.ferry is not None:
            env.stop_ferry()    # the TAP goes with Ferry's descriptor ...
        side.delete()           # ... then its namespace
