"""QEMU test guests a test can drive, and the Linux network namespace around a TAP port.

A `Guest` is one tools/run-test-guest.sh (QEMU, TCG) with its virtio-net NIC on a vhost-user
socket and, besides the serial console (a log file), a second serial port on a unix socket: the
guest's /init (tools/build-test-guest.sh) reads commands from it once it prints
FERRY-GUEST-COMMANDS, so a test can make a booted guest ping again whenever it wants, instead of
booting a new guest per ping. Answers come back on the console, tagged with the command's id.

A `Netns` is a network namespace named after this process, so that leftovers of a killed run
can be told from another run's: `Netns.remove_stale()` deletes those whose creator is dead.
A TAP that Ferry created in the root namespace is moved into one with `adopt()`. Checked on this
kernel (6.1): the TAP keeps its file descriptor across the move (Ferry reads and writes it as
before), the move takes the link down and drops its addresses (so `adopt()` configures it after
the move), and the TAP disappears when Ferry closes its descriptor, wherever it is. Moving the
TAP is simpler than a veth pair plus a bridge in the root namespace, and it leaves the root
namespace untouched.

Python 3 stdlib only.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from typing import Callable, Optional

import pytest

import harness as h

RUN_GUEST = h.REPO / "tools" / "run-test-guest.sh"
BUILD_GUEST = h.REPO / "tools" / "build-test-guest.sh"
QEMU_TIMEOUT = 300       # run-test-guest.sh --timeout: QEMU is killed after this in any case
BOOT_TIMEOUT = 60.0      # QEMU start to FERRY-GUEST-COMMANDS (normally 4-8 s under TCG)

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[()][A-Za-z0-9]|[@-~])")
READY = re.compile(r"FERRY-GUEST-READY ip=(\S+) mtu=(\d+)")
COMMANDS = re.compile(r"FERRY-GUEST-COMMANDS tty=(\S+)")


def clean_console(text: str) -> str:
    """Serial console text without CRs and terminal escapes (incl. ESC c, cursor moves)."""
    return _ANSI.sub("", text).replace("\r", "")


def environment_problems() -> list[str]:
    problems = h.environment_problems(need_ferry=True, need_testpmd=False)
    qemu = os.environ.get("FERRY_QEMU", "qemu-system-x86_64")
    if not shutil.which(qemu):
        problems.append(f"{qemu} not found: install qemu-system-x86 (tools/install-deps.sh test) "
                        "or set FERRY_QEMU")
    for script in (RUN_GUEST, BUILD_GUEST):
        if not os.access(script, os.X_OK):
            problems.append(f"{script} missing or not executable")
    for tool in ("ip", "tcpdump", "busybox"):
        if not shutil.which(tool):
            problems.append(f"{tool} not found: install iproute2, tcpdump, busybox-static "
                            "(tools/install-deps.sh test)")
    return problems


def build_guest_image():
    """Builds (or checks) the test guest once, so its build time never eats a boot timeout."""
    res = subprocess.run([str(BUILD_GUEST)], capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        pytest.fail(f"tools/build-test-guest.sh failed ({res.returncode}):\n{res.stderr[-3000:]}",
                    pytrace=False)


# --------------------------------------------------------------------------- guests


class PingResult:
    def __init__(self, match: re.Match, line: str, output: str = ""):
        self.target = match.group(1)
        self.size = int(match.group(2))
        self.transmitted = int(match.group(3))
        self.received = int(match.group(4))
        self.line = line
        # busybox ping's reply lines ("64 bytes from ADDR: seq=N ttl=64 time=..."), which the
        # guest prints before the result: the sequence numbers that got an answer.
        self.answered = sorted({int(n) for n in re.findall(r"bytes from \S+ seq=(\d+)",
                                                           output)})

    def __repr__(self):
        return f"{self.received}/{self.transmitted} answered ({self.line!r})"


def assert_all_answered(result, count: int, what: str, context: Callable[[], str]):
    """A guest's PingResult or a Netns.ping (tx, rx, output): every one of `count` answered.
    context() is called only on failure, for the message."""
    tx, rx = (result.transmitted, result.received) if isinstance(result, PingResult) \
        else result[:2]
    assert (tx, rx) == (count, count), \
        f"{what}: wanted {count} of {count} pings answered, saw {rx} of {tx}: " \
        f"{result if isinstance(result, PingResult) else result[2]}\n{context()}"


class GuestProcess:
    """One tools/run-test-guest.sh (QEMU) in its own process group, console in a log file:
    starting it, reading its console, waiting for a line, stopping it. What the guest is told
    to do (kernel command line, command channel) is the subclass's."""

    def __init__(self, name: str, log: str, cmd: list[str]):
        self.name = name
        self.log = log
        self.err = log + ".stderr"
        self.cmd = cmd
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "GuestProcess":
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True, preexec_fn=h.die_with_parent)
        return self

    def console(self) -> str:
        try:
            with open(self.log, "r", errors="replace") as f:
                return clean_console(f.read())
        except FileNotFoundError:
            return ""

    def stderr(self) -> str:
        try:
            with open(self.err, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def describe(self, lines: int = 25) -> str:
        tail = "\n".join(self.console().splitlines()[-lines:])
        rc = self.proc.poll() if self.proc else None
        return (f"--- guest {self.name} (exit {rc}) console tail ---\n{tail}\n"
                f"--- guest {self.name} stderr ---\n{self.stderr()[-1500:]}")

    def wait_for(self, pattern: re.Pattern, timeout: float,
                 watch: Optional[Callable[[], Optional[str]]] = None,
                 after: int = 0) -> tuple[re.Match, str]:
        """The first match of pattern in the console text from offset `after` on, and that
        text; fails the test on timeout or exit, or as soon as watch() returns a problem."""
        deadline = time.monotonic() + timeout
        next_watch = 0.0
        while True:
            text = self.console()[after:]
            m = pattern.search(text)
            if m:
                return m, text
            if watch is not None and time.monotonic() >= next_watch:
                problem = watch()
                if problem:
                    pytest.fail(f"while waiting for {pattern.pattern!r} from guest {self.name}: "
                                f"{problem}\n{self.describe()}", pytrace=False)
                next_watch = time.monotonic() + 1.0
            if self.proc is not None and self.proc.poll() is not None:
                m = pattern.search(self.console()[after:])
                if m:
                    return m, text
                pytest.fail(f"guest {self.name} exited ({self.proc.returncode}) without printing "
                            f"{pattern.pattern!r}\n{self.describe()}", pytrace=False)
            if time.monotonic() >= deadline:
                pytest.fail(f"guest {self.name}: no {pattern.pattern!r} within {timeout:.0f}s\n"
                            f"{self.describe()}", pytrace=False)
            time.sleep(0.05)

    def stop(self):
        """SIGTERM to the group (run-test-guest's `timeout` passes it to QEMU), then SIGKILL."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever is left in the group
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


class Guest(GuestProcess):
    """A test guest that reads commands over a unix socket (its ttyS1)."""

    def __init__(self, name: str, mac: str, vhost_socket: Optional[str], ip: str, workdir: str,
                 extra_append: str = "ipv6.disable=1", vhost_server: bool = False,
                 vhost_reconnect: Optional[int] = None, device_options: str = "",
                 mem: Optional[int] = None, tap: Optional[str] = None, qmp: bool = False,
                 memory_slots: Optional[tuple[int, int]] = None, allow_reboot: bool = False,
                 qemu_timeout: int = QEMU_TIMEOUT, qboot: bool = False):
        """vhost_reconnect=N: QEMU reconnects to the vhost-user socket every N s after the
        back-end went away (a restarted Ferry gets the same guest back). device_options:
        more virtio-net-pci properties (e.g. "guest_tso4=off,guest_tso6=off"); mem: guest RAM
        in MiB; tap=IFNAME: QEMU's own -netdev tap instead of the vhost-user socket (give
        vhost_socket=None). qmp: a QMP socket at `qmp_socket` (qmp_client.QMP); memory_slots
        (SLOTS, MAX_MIB): room for hot-plugged DIMMs; allow_reboot: a reset or reboot boots
        the guest again instead of ending QEMU; qemu_timeout: QEMU is killed after that many
        seconds in any case; qboot: QEMU's qboot firmware, a faster boot than SeaBIOS's."""
        log = os.path.join(workdir, f"guest-{name}.log")
        self.mac = mac
        self.ip = ip.split("/")[0]
        self.command_socket = os.path.join(workdir, f"{name}.cmd")
        cmd = [str(RUN_GUEST), "--name", name, "--mac", mac,
               "--append", f"ferry.ip={ip} {extra_append}", "--log", log,
               "--timeout", str(qemu_timeout), "--command-socket", self.command_socket]
        cmd += ["--netdev-tap", tap] if tap is not None else ["--vhost-socket", vhost_socket]
        if device_options:
            cmd += ["--device-options", device_options]
        if mem is not None:
            cmd += ["--mem", str(mem)]
        if vhost_server:
            cmd.append("--vhost-server")
        if vhost_reconnect is not None:
            cmd += ["--vhost-reconnect", str(vhost_reconnect)]
        self.qmp_socket = os.path.join(workdir, f"{name}.qmp") if qmp else None
        if self.qmp_socket:
            cmd += ["--qmp-socket", self.qmp_socket]
        if memory_slots is not None:
            cmd += ["--memory-slots", str(memory_slots[0]), "--max-mem", str(memory_slots[1])]
        if allow_reboot:
            cmd.append("--allow-reboot")
        if qboot:
            cmd.append("--qboot")
        super().__init__(name, log, cmd)
        self.sock: Optional[socket.socket] = None
        self._ids = 0

    def wait_commands(self, timeout: float = BOOT_TIMEOUT,
                      watch: Optional[Callable[[], Optional[str]]] = None, after: int = 0):
        """Until the guest reads commands (in the console from offset `after` on: a guest
        that rebooted reads them again); then connect to its command socket, once: QEMU keeps
        the connection across resets of the guest."""
        self.wait_for(COMMANDS, timeout, watch, after=after)
        if self.sock is None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(self.command_socket)

    def begin(self, line: str) -> tuple[str, int, str]:
        """Send one command and return at once: (id, console offset, line) for finish().
        The guest runs one command at a time; the next one waits until this one is done."""
        if self.sock is None:
            raise h.HarnessError(f"guest {self.name}: wait_commands() first")
        self._ids += 1
        cid = f"{self.name}-{self._ids}"
        verb, _, args = line.partition(" ")
        start = len(self.console())
        self.sock.sendall(f"{verb} {cid} {args}\n".encode())
        return cid, start, line

    def finish(self, pending: tuple[str, int, str], timeout: float = 30.0,
               watch: Optional[Callable[[], Optional[str]]] = None) -> str:
        """Wait for a command begin() sent; the console text it produced, up to its DONE
        line."""
        cid, start, line = pending
        m, text = self.wait_for(re.compile(rf"FERRY-COMMAND-DONE id={re.escape(cid)} "
                                           rf"status=(\d+)"), timeout, watch, after=start)
        if m.group(1) != "0":
            pytest.fail(f"guest {self.name}: command {line!r} failed (status {m.group(1)})\n"
                        f"{self.describe()}", pytrace=False)
        return text[:m.end()]

    def command(self, line: str, timeout: float = 30.0,
                watch: Optional[Callable[[], Optional[str]]] = None) -> str:
        """Send one command; return the console text it produced, up to its DONE line."""
        return self.finish(self.begin(line), timeout, watch)

    def ping_begin(self, target: str, count: int = 3, size: int = 56,
                   wait: int = 1) -> tuple[str, int, str]:
        """Start a ping run (see ping()) and return at once; ping_finish() collects it."""
        return self.begin(f"ping {target} {count} {size} {wait}")

    def ping_finish(self, pending: tuple[str, int, str], timeout: float,
                    watch: Optional[Callable[[], Optional[str]]] = None) -> PingResult:
        text = self.finish(pending, timeout, watch)
        m = re.search(r"FERRY-PING-RESULT target=(\S+) size=(\d+) transmitted=(\d+) "
                      r"received=(\d+) id=\S+", text)
        if not m:
            pytest.fail(f"guest {self.name}: no ping result for {pending[2]!r}\n"
                        f"{self.describe()}", pytrace=False)
        return PingResult(m, m.group(0), text[:m.start()])

    def ping(self, target: str, count: int = 3, size: int = 56, wait: int = 1,
             watch: Optional[Callable[[], Optional[str]]] = None) -> PingResult:
        """One ping run (no retries): COUNT echo requests 0.2 s apart, then up to WAIT s."""
        return self.ping_finish(self.ping_begin(target, count, size, wait),
                                count * 0.2 + wait + 20, watch)

    def flush_neighbours(self):
        self.command("flush")

    def stop(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        super().stop()
        for path in (self.command_socket, self.qmp_socket):
            try:
                if path:
                    os.unlink(path)
            except FileNotFoundError:
                pass


# --------------------------------------------------------------------------- namespaces

NETNS_PREFIX = "ferry-it-"
_netns_counter = 0


def run(cmd: list[str], timeout: float = 15.0, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise h.HarnessError(f"{' '.join(cmd)} failed ({res.returncode}): "
                             f"{(res.stderr or res.stdout).strip()}")
    return res


class Netns:
    """A network namespace of this test run: IPv6 off (no router/neighbour solicitations or MLD
    reports to flood through the switch), loopback up. delete() removes it with everything
    moved into it."""

    def __init__(self, tag: str):
        global _netns_counter
        _netns_counter += 1
        self.name = f"{NETNS_PREFIX}{os.getpid()}-{_netns_counter}-{tag}"
        run(["ip", "netns", "add", self.name])
        try:
            # Before any link moves in: a moved-in link takes these defaults, so it never
            # sends a single IPv6 frame (setting it per link after the move is too late for
            # the MLD report sent when the link is registered).
            self.sysctl("net.ipv6.conf.all.disable_ipv6", "1")
            self.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
            self.ip("link", "set", "lo", "up")
        except BaseException:
            self.delete()
            raise

    def exec(self, cmd: list[str], timeout: float = 15.0, check: bool = True):
        return run(["ip", "netns", "exec", self.name] + cmd, timeout=timeout, check=check)

    def ip(self, *args: str, check: bool = True):
        return run(["ip", "-n", self.name] + list(args), check=check)

    def sysctl(self, key: str, value: str):
        self.exec(["sysctl", "-qw", f"{key}={value}"])

    def popen(self, cmd: list[str], log: str) -> subprocess.Popen:
        with open(log, "wb") as out:
            return subprocess.Popen(["ip", "netns", "exec", self.name] + cmd,
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=h.die_with_parent)

    def adopt(self, link: str, timeout: float = 10.0, source: Optional["Netns"] = None):
        """Move `link` (in the root namespace, or in `source`) in here and bring it up."""
        # Ferry creates the TAP after it starts; wait until the kernel has it.
        if source is None:
            h.wait_until(lambda: os.path.exists(f"/sys/class/net/{link}"), timeout,
                         f"interface {link} in the root namespace")
            run(["ip", "link", "set", link, "netns", self.name])
        else:
            h.wait_until(lambda: source.ip("link", "show", link, check=False).returncode == 0,
                         timeout, f"interface {link} in {source.name}")
            source.ip("link", "set", link, "netns", self.name)
        self.ip("link", "set", link, "up")

    def mac(self, link: str) -> str:
        out = self.ip("-o", "link", "show", link).stdout
        m = re.search(r"link/ether ([0-9a-f:]{17})", out)
        if not m:
            raise h.HarnessError(f"no MAC address for {link} in {self.name}: {out!r}")
        return m.group(1)

    def ping(self, target: str, count: int = 3, wait: int = 1, source: Optional[str] = None):
        """busybox ping (Debian's iputils-ping is not among the dependencies); (tx, rx, out)."""
        cmd = ["busybox", "ping", "-c", str(count), "-i", "0.2", "-W", str(wait)]
        if source:
            cmd += ["-I", source]
        res = self.exec(cmd + [target], timeout=count * 0.2 + wait + 15, check=False)
        out = res.stdout + res.stderr
        tx = re.search(r"(\d+) packets transmitted", out)
        rx = re.search(r"(\d+) packets received", out)
        return (int(tx.group(1)) if tx else 0, int(rx.group(1)) if rx else 0, out)

    def delete(self):
        run(["ip", "netns", "delete", self.name], check=False)

    @staticmethod
    def remove_stale():
        """Delete namespaces a killed earlier run of these tests left behind (their creator's
        pid, in the name, is gone)."""
        res = run(["ip", "netns", "list"], check=False)
        for line in res.stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            m = re.match(rf"{re.escape(NETNS_PREFIX)}(\d+)-", name)
            if m and not os.path.exists(f"/proc/{m.group(1)}"):
                run(["ip", "netns", "delete", name], check=False)
