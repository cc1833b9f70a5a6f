"""TCP between two network namespaces through Ferry, with the kernel's segmentation offloads.

Run as root from the repository root, after `swift build -c release`:

    python3 -m pytest -v Tests/Integration/test_tcp_offload.py

* tap:    Ferry with two `tap:` ports, each TAP moved into a namespace of its own. The
          kernel hands Ferry 64 KiB TCP super-frames (TUNSETOFFLOAD TSO) and takes them back
          whole: a 64 MiB transfer arrives byte for byte (sha256), and the counters show
          super-frames crossed (`gso_passed`).
* packet: Ferry with two `packet:` ports on veths whose peers are in the namespaces, TSO and
          checksum offload on there (the veth's defaults): the namespaces' kernels send
          super-frames with partial checksums into the veths, the packet ports read and write
          them with their virtio-net header (PACKET_VNET_HDR), and the counters show them
          crossing whole (`gso_passed`). With `offloads=off` on both ports Ferry segments them
          and finishes the checksums itself (`segmented_frames`); the same bytes arrive.
* packet → tap: host traffic through a packet uplink to a TAP with `offloads=off`: every
          partial checksum the sending kernel left is finished by Ferry and checked by the
          receiving kernel (a wrong one would drop the segment and stall the transfer).
* tap → xdp: a namespace behind a TAP sends to one behind an `xdp:` uplink on a veth. The
          TAP's kernel hands Ferry 64 KiB super-frames; AF_XDP takes no GSO, so Ferry cuts each
          straight into UMEM frames (`segmented_frames`), every checksum computed, and the
          receiving kernel checks them all: the transfer arrives byte for byte.

Addresses in 198.18.0.0/15; every namespace, veth and Ferry goes at the end, also on failure.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

import pytest

import harness as h
from tcp_transfer import RECEIVER, SENDER

TRANSFER_BYTES = 64 << 20
PORT = 5201


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True)


def ns(name: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return run("ip", "netns", "exec", name, *cmd, check=check)


@pytest.fixture(scope="module")
def payload(tmp_path_factory, ferry_binary):
    problems = [] if os.geteuid() == 0 else ["not root: namespaces, TAPs and veths need root"]
    problems += [f"{tool} not found: tools/install-deps.sh installs it"
                 for tool in ("ethtool",) if not shutil.which(tool)]
    if problems:
        pytest.fail("cannot run the TCP tests:\n  " + "\n  ".join(problems), pytrace=False)
    path = str(tmp_path_factory.mktemp("tcp") / "payload")
    with open(path, "wb") as f:
        f.write(os.urandom(TRANSFER_BYTES))
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return path, digest


def transfer(sender_ns: str, receiver_ns: str, address: str, payload: tuple[str, str]):
    """Sends the payload over TCP from one namespace to the other; asserts it arrived whole."""
    path, digest = payload
    receiver = subprocess.Popen(["ip", "netns", "exec", receiver_ns, sys.executable, "-c", RECEIVER, address,
                                 str(PORT)], stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout.readline().strip() == "listening"
        sent = ns(sender_ns, sys.executable, "-c", SENDER, address, str(PORT), path, check=False)
        assert sent.returncode == 0, sent.stderr
        out, _ = receiver.communicate(timeout=120)
        count, got = out.split()
        assert int(count) == TRANSFER_BYTES and got == digest, "the bytes that arrived differ from those sent"
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()


class Namespaces:
    def __init__(self, tag: str):
        self.names = [f"fto-{tag}-a-{os.getpid()}", f"fto-{tag}-b-{os.getpid()}"]
        for name in self.names:
            run("ip", "netns", "del", name, check=False)
            run("ip", "netns", "add", name)
            ns(name, "ip", "link", "set", "lo", "up")
            # No IPv6 on links that arrive: no router solicitation or DAD frame from one TAP while
            # the other is still on its way (down) into its namespace, which would count io_error.
            ns(name, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1", "net.ipv6.conf.all.disable_ipv6=1")

    def remove(self):
        for name in self.names:
            run("ip", "netns", "del", name, check=False)


def test_tcp_through_two_tap_ports_carries_super_frames(tmp_path, payload):
    spaces = Namespaces("t")
    taps = [f"fto{os.getpid() % 10000}a", f"fto{os.getpid() % 10000}b"]
    ferry = h.Ferry([f"tap:{taps[0]},name=a", f"tap:{taps[1]},name=b"], control=str(tmp_path / "ctl.sock"),
                    log_path=str(tmp_path / "ferry.log"))
    try:
        ferry.start()
        for i, (tap, space) in enumerate(zip(taps, spaces.names)):
            run("ip", "link", "set", tap, "netns", space)
            ns(space, "ip", "addr", "add", f"198.18.7.{i + 1}/24", "dev", tap)
            ns(space, "ip", "link", "set", tap, "up")
        # Ferry set TSO on each TAP (TUNSETOFFLOAD), so the namespaces' kernels send super-frames.
        h.wait_until(lambda: "offloads 0x" in ferry.log_text(), 10, "the TAP offloads applied")
        features = ns(spaces.names[0], "ethtool", "-k", taps[0]).stdout
        assert "tcp-segmentation-offload: on" in features, features
        # A read or write while a TAP moves into its namespace fails (EIO, io_error): the
        # transfer itself must drop nothing.
        before = ferry.stats()
        settled = [h.drop_total(h.port_stats(before, name)) for name in ("a", "b")]
        transfer(spaces.names[0], spaces.names[1], "198.18.7.2", payload)
        stats = ferry.stats()
        into_b = h.port_stats(stats, "b")["offloads"]
        assert into_b["gso_passed"] > 100, f"no super-frames crossed: {into_b}"
        assert into_b.get("segmented_frames", 0) == 0, into_b
        assert h.port_stats(stats, "b")["tx_bytes"] > TRANSFER_BYTES
        assert [h.drop_total(h.port_stats(stats, name)) for name in ("a", "b")] == settled, stats
    finally:
        ferry.stop()
        spaces.remove()


def make_veths(spaces: Namespaces, prefix: str, subnet: str) -> list[str]:
    """A veth per namespace, `wire` inside it with TSO and checksum offload as veth has them by default."""
    veths = [f"{prefix}{os.getpid() % 10000}{side}" for side in "ab"]
    for i, (veth, space) in enumerate(zip(veths, spaces.names)):
        run("ip", "link", "del", veth, check=False)
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "wire", "netns", space)
        run("ip", "link", "set", veth, "up")
        ns(space, "ip", "addr", "add", f"{subnet}.{i + 1}/24", "dev", "wire")
        ns(space, "ip", "link", "set", "wire", "up")
    features = ns(spaces.names[0], "ethtool", "-k", "wire").stdout
    assert "tcp-segmentation-offload: on" in features and "tx-checksumming: on" in features, features
    return veths


@pytest.mark.parametrize("offloads", ["on", "off"])
def test_tcp_through_two_packet_ports_on_veths(tmp_path, payload, offloads):
    spaces = Namespaces(f"p{offloads}")
    veths = []
    ferry = None
    try:
        veths = make_veths(spaces, "ftp", "198.18.8")
        ferry = h.Ferry([f"packet:{veths[0]},name=a,offloads={offloads}",
                         f"packet:{veths[1]},name=b,offloads={offloads}"],
                        control=str(tmp_path / "ctl.sock"), log_path=str(tmp_path / "ferry.log")).start()
        assert f"virtio-net headers, offloads {offloads}" in ferry.log_text()
        before = ferry.stats()
        settled = [h.drop_total(h.port_stats(before, name)) for name in ("a", "b")]
        transfer(spaces.names[0], spaces.names[1], "198.18.8.2", payload)
        stats = ferry.stats()
        into_b = h.port_stats(stats, "b")
        offloaded = into_b.get("offloads", {})
        if offloads == "on":
            assert offloaded.get("gso_passed", 0) > 100, f"no super-frames crossed: {offloaded}"
            assert offloaded.get("segmented_frames", 0) == 0, offloaded
        else:
            # The sender's kernel still hands Ferry super-frames (the veth's TSO): Ferry cuts them.
            assert offloaded.get("segmented_frames", 0) > 100, f"nothing segmented: {offloaded}"
            assert offloaded.get("gso_passed", 0) == 0, offloaded
        assert into_b["tx_bytes"] > TRANSFER_BYTES
        assert [h.drop_total(h.port_stats(stats, name)) for name in ("a", "b")] == settled, stats
        # With offloads=off the receiver gets complete checksums and checks every one.
        for space in spaces.names:
            assert tcp_checksum_errors(space) == 0, space
    finally:
        if ferry is not None:
            ferry.stop()
        for veth in veths:
            run("ip", "link", "del", veth, check=False)
        spaces.remove()


def uplink_and_tap(tmp_path, spaces: Namespaces, kind: str, subnet: str) -> tuple[h.Ferry, str]:
    """Ferry with a `kind:` uplink on a veth whose peer `wire` (SUBNET.1) is in the first
    namespace, and a `tap:` port whose TAP (SUBNET.2) is in the second. Returns Ferry and the veth;
    the caller stops one and deletes the other."""
    veth = f"ft{kind[0]}u{os.getpid() % 10000}"
    tap = f"ft{kind[0]}t{os.getpid() % 10000}"
    run("ip", "link", "del", veth, check=False)
    # One queue each way: an xdp port binds the queues the driver reports, and veth reports
    # one channel while it may pick a second RX queue, whose frames no socket would take.
    run("ip", "link", "add", veth, "numtxqueues", "1", "numrxqueues", "1", "type", "veth", "peer", "name", "wire",
        "numtxqueues", "1", "numrxqueues", "1", "netns", spaces.names[0])
    run("ip", "link", "set", veth, "up")
    ns(spaces.names[0], "ip", "addr", "add", f"{subnet}.1/24", "dev", "wire")
    ns(spaces.names[0], "ip", "link", "set", "wire", "up")
    if kind == "xdp":
        # XDP sees a frame as the peer left it and AF_XDP carries no checksum state: a partial
        # checksum (veth's default) would reach the TAP unfinished. A NIC's wire has none.
        ns(spaces.names[0], "ethtool", "-K", "wire", "tx", "off")
    ferry = h.Ferry([f"{kind}:{veth},name=up", f"tap:{tap},name=t"],
                    control=str(tmp_path / "ctl.sock"), log_path=str(tmp_path / "ferry.log")).start()
    h.wait_until(lambda: "offloads 0x" in ferry.log_text(), 10, "the TAP offloads applied")
    run("ip", "link", "set", tap, "netns", spaces.names[1])
    ns(spaces.names[1], "ip", "addr", "add", f"{subnet}.2/24", "dev", tap)
    ns(spaces.names[1], "ip", "link", "set", tap, "up")
    features = ns(spaces.names[1], "ethtool", "-k", tap).stdout
    assert "tcp-segmentation-offload: on" in features, features
    return ferry, veth


def transfer_through_uplink(tmp_path, payload, kind: str, subnet: str, toward_uplink: bool) -> dict:
    """The payload from the namespace behind the `tap:` port to the one behind the `kind:` uplink
    (`toward_uplink`), or the other way; neither port drops a frame it did not drop before, and
    neither namespace's kernel counts a TCP checksum error. Returns Ferry's stats after it."""
    spaces = Namespaces(kind[0])
    ferry = None
    veth = f"ft{kind[0]}u{os.getpid() % 10000}"
    try:
        ferry, veth = uplink_and_tap(tmp_path, spaces, kind, subnet)
        before = ferry.stats()
        settled = [h.drop_total(h.port_stats(before, name)) for name in ("up", "t")]
        if toward_uplink:
            transfer(spaces.names[1], spaces.names[0], f"{subnet}.1", payload)
        else:
            transfer(spaces.names[0], spaces.names[1], f"{subnet}.2", payload)
        stats = ferry.stats()
        assert [h.drop_total(h.port_stats(stats, name)) for name in ("up", "t")] == settled, stats
        # Without the virtio-net header the host's partial checksums reached the TAP as wrong
        # ones, and the receiving kernel counted and dropped every segment.
        for space in spaces.names:
            assert tcp_checksum_errors(space) == 0, space
        return stats
    finally:
        if ferry is not None:
            ferry.stop()
        run("ip", "link", "del", veth, check=False)
        spaces.remove()


def test_host_tcp_through_a_packet_uplink_reaches_a_tap_with_correct_checksums(tmp_path, payload):
    stats = transfer_through_uplink(tmp_path, payload, "packet", "198.18.10", toward_uplink=False)
    into_tap = h.port_stats(stats, "t").get("offloads", {})
    assert into_tap.get("gso_passed", 0) > 100, f"the host's super-frames did not cross whole: {into_tap}"


def test_tcp_from_a_tap_through_an_xdp_uplink_is_segmented_into_umem_frames(tmp_path, payload):
    stats = transfer_through_uplink(tmp_path, payload, "xdp", "198.18.11", toward_uplink=True)
    uplink = h.port_stats(stats, "up")
    offloaded = uplink.get("offloads", {})
    assert offloaded.get("segmented_frames", 0) > 100, f"nothing segmented for the xdp uplink: {offloaded}"
    assert offloaded.get("segments_out", 0) > offloaded["segmented_frames"], offloaded
    assert offloaded.get("gso_passed", 0) == 0, offloaded
    assert uplink["tx_bytes"] > TRANSFER_BYTES


def tcp_checksum_errors(space: str) -> int:
    """The namespace kernel's count of TCP segments it dropped for a wrong checksum."""
    lines = [line.split() for line in ns(space, "cat", "/proc/net/snmp").stdout.splitlines()
             if line.startswith("Tcp:")]
    return int(dict(zip(lines[0][1:], lines[1][1:]))["InCsumErrors"])
