"""VXLAN tunnel ports across a routed underlay: Ferry with a Linux bridge's vxlan device, and
Ferry with Ferry.

Run as root from the repository root, after `swift build -c release`:

    python3 -m pytest -v Tests/Integration/test_vxlan.py

The underlay is routed: each "host" is a namespace with one veth to a router namespace, in a
subnet of its own (198.18.1.0/24, 198.18.2.0/24), MTU 1600 so that a 1500-byte guest frame plus
50 bytes of VXLAN over IPv4 fits. The overlay is 198.18.100.0/24.

* Linux interop (`test_ferry_and_a_linux_bridge_share_a_vni`): host A runs Ferry with a QEMU
  guest on a vhost port and `vxlan:100,local=198.18.1.1,remote=198.18.2.1`; host B is plain
  Linux: a bridge with a kernel `vxlan` device (VNI 100, UDP 4789) and a veth to namespace C
  behind it. The guest pings C and C pings the guest; tcpdump on the router's B-side veth
  decodes the datagrams as VXLAN VNI 100 to UDP 4789 from Ferry's address; frames from a
  `gen:` port to a MAC nobody has reach C (head-end replication, then the Linux bridge's
  flood); Ferry's forwarding database has C's MAC behind VTEP 198.18.2.1, and `show vteps`
  counts both ways.
* Through the AF_XDP uplink (`test_ferry_sends_through_its_xdp_uplink_to_a_linux_bridge`): host A's
  Ferry has its underlay veth as an `xdp:` port (VLAN 4094, which no other port carries) and
  `vxlan:...,via=up`: the same interop with a TAP station, Ferry's datagrams leaving as whole
  frames it built (outer MACs from A's neighbour table: A's veth to the router's), as tcpdump on
  the router's A side shows, counted on the uplink; B's datagrams come in through the uplink's
  AF_XDP socket (the steering program redirects them), none through the kernel's UDP socket.
* An IPv6 underlay (`test_an_ipv6_underlay_reaches_a_linux_bridge`, through the kernel's
  sockets and through the xdp uplink): the same hosts with IPv6 only on the underlay veths
  (fd00:18:1::/64, fd00:18:2::/64), the Linux VTEP a kernel vxlan device over IPv6, which
  sends every datagram with a UDP checksum (left unfinished by its veth's offload) and drops
  one without (udp6zerocsumrx off): the station and C ping each other, tcpdump shows the
  framing and the checksums Ferry wrote itself (through the uplink) right, and the xdp path takes B's datagrams itself, each
  checksum checked (none dropped as `vxlan_bad_checksum`).
* Ferry ↔ Ferry (`test_two_ferry_hosts_carry_ping_and_tcp`): hosts A and B each run Ferry
  with a TAP port (moved into a guest namespace) and a vxlan port; the two guests ping each
  other and a TCP transfer arrives byte for byte (sha256); the TAPs hand Ferry 64 KiB
  super-frames, which Ferry segments for the tunnel.

Every namespace, and so every veth, goes at the end, also on failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time

import pytest

import harness as h
import qemu_guest as qg
from tcp_transfer import RECEIVER, SENDER

VNI = 100
UNDERLAY_MTU = 1600
A_UNDERLAY, B_UNDERLAY = "198.18.1.1", "198.18.2.1"
GUEST_IP, C_IP = "198.18.100.1", "198.18.100.2"
GUEST_MAC = "52:54:00:18:64:01"
UNKNOWN_MAC, GEN_SOURCE = "02:00:00:18:64:99", "02:00:00:18:64:77"


def tool_problems() -> list[str]:
    problems = [] if os.geteuid() == 0 else ["not root: namespaces, veths and raw sockets need root"]
    problems += [f"{tool} not found: tools/install-deps.sh test installs it"
                 for tool in ("ip", "tcpdump", "busybox") if not shutil.which(tool)]
    return problems


@pytest.fixture
def underlay(namespaces):
    """Hosts A and B, each one routed hop from the other through a router namespace."""
    return routed_underlay(namespaces, A_UNDERLAY, B_UNDERLAY)


def routed_underlay(namespaces, a_address: str, b_address: str):
    """Namespaces A, router and B; A and B each with a veth to the router in a subnet of its own
    (IPv4 /24 or IPv6 /64, the router at .254 or ::fe), the router forwarding. Over IPv6 only
    the underlay veths have IPv6 (a link made later takes the default: off)."""
    problems = tool_problems()
    if problems:
        pytest.fail("cannot run the VXLAN tests:\n  " + "\n  ".join(problems), pytrace=False)
    a, router, b = namespaces("vxa"), namespaces("vxr"), namespaces("vxb")
    ipv6 = ":" in a_address
    if ipv6:
        for ns in (a, router, b):
            ns.sysctl("net.ipv6.conf.all.disable_ipv6", "0")
            ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
        router.sysctl("net.ipv6.conf.all.forwarding", "1")
    else:
        router.sysctl("net.ipv4.ip_forward", "1")
    for host, address, side in ((a, a_address, "ra"), (b, b_address, "rb")):
        host_end = f"vx{side}{os.getpid() % 10000}"
        router_end = f"vx{side}r{os.getpid() % 10000}"
        qg.run(["ip", "link", "add", host_end, "netns", host.name, "mtu", str(UNDERLAY_MTU), "type", "veth",
                "peer", "name", router_end, "netns", router.name, "mtu", str(UNDERLAY_MTU)])
        gateway, prefix, extra = (address.rsplit(":", 1)[0] + ":fe", "64", ["nodad"]) if ipv6 \
            else (address.rsplit(".", 1)[0] + ".254", "24", [])
        if ipv6:
            host.sysctl(f"net.ipv6.conf.{host_end}.disable_ipv6", "0")
            router.sysctl(f"net.ipv6.conf.{router_end}.disable_ipv6", "0")
        host.ip("addr", "add", f"{address}/{prefix}", "dev", host_end, *extra)
        host.ip("link", "set", host_end, "up")
        host.ip("route", "add", "default", "via", gateway)
        router.ip("addr", "add", f"{gateway}/{prefix}", "dev", router_end, *extra)
        router.ip("link", "set", router_end, "up")
    return a, router, b


def router_side(router, side: str) -> str:
    return f"vx{side}r{os.getpid() % 10000}"


def linux_vtep_host(b, c, local: str = B_UNDERLAY, remote: str = A_UNDERLAY):
    """Host B as Linux does it: bridge br0 with vxlan device vx100 and a veth to namespace C."""
    b.ip("link", "add", "vx100", "type", "vxlan", "id", str(VNI), "local", local, "remote", remote,
         "dstport", "4789")
    b.ip("link", "add", "br0", "type", "bridge")
    b.ip("link", "set", "vx100", "master", "br0")
    qg.run(["ip", "link", "add", "vxc", "netns", b.name, "type", "veth", "peer", "name", "c0", "netns", c.name])
    b.ip("link", "set", "vxc", "master", "br0")
    for link in ("vx100", "br0", "vxc"):
        b.ip("link", "set", link, "up")
    c.ip("addr", "add", f"{C_IP}/24", "dev", "c0")
    c.ip("link", "set", "c0", "up")


def capture(ns, interface: str, expression: list[str], path: str) -> subprocess.Popen:
    """tcpdump in `ns` writing to `path` until stopped; returns once it listens."""
    # --immediate-mode: packets reach tcpdump as they come, not in blocks a stop could still hold.
    proc = subprocess.Popen(["ip", "netns", "exec", ns.name, "tcpdump", "-i", interface, "-n", "-U", "--immediate-mode",
                             "-w", path]
                            + expression, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # tcpdump says "listening on ..." on stderr once its socket is open.
    line = proc.stderr.readline()
    assert "listening" in line, f"tcpdump did not start: {line}"
    return proc


def read_capture(path: str) -> str:
    return subprocess.run(["tcpdump", "-r", path, "-n", "-e", "-v"], capture_output=True, text=True).stdout


def udp_checksums(path: str, source: str, port: int) -> list[int]:
    """The UDP checksum of every IPv4 datagram from `source` to `port` in a pcap file (Ethernet)."""
    with open(path, "rb") as f:
        data = f.read()
    sums, offset = [], 24
    wanted = bytes(int(b) for b in source.split("."))
    while offset + 16 <= len(data):
        length = struct.unpack_from("<I", data, offset + 8)[0]
        frame = data[offset + 16:offset + 16 + length]
        offset += 16 + length
        if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17 or frame[26:30] != wanted:
            continue
        l4 = 14 + (frame[14] & 0x0F) * 4
        if struct.unpack_from("!H", frame, l4 + 2)[0] == port:
            sums.append(struct.unpack_from("!H", frame, l4 + 6)[0])
    return sums


def stop(proc: subprocess.Popen):
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_ferry_and_a_linux_bridge_share_a_vni(lab, underlay, namespaces, guest_machine, ferry_binary):
    a, router, b = underlay
    c = namespaces("vxc")
    linux_vtep_host(b, c)
    sock = lab.path("vm.sock")
    ferry = lab.ferry([f"vhost:{sock},name=vm",
                       f"vxlan:{VNI},local={A_UNDERLAY},remote={B_UNDERLAY},name=vx"], netns=a.name)
    guest = qg.Guest("vx-g", GUEST_MAC, sock, f"{GUEST_IP}/24", lab.dir.path)
    try:
        guest.start()
        guest.wait_commands()
        check_interop(lab, ferry, guest, router, c)
    finally:
        guest.stop()


def check_interop(lab, ferry, guest, router, c):
    wire = capture(router, router_side(router, "rb"), ["udp"], lab.path("underlay.pcap"))
    try:
        result = guest.ping(C_IP, count=5)
        qg.assert_all_answered(result, 5, "guest -> C over VXLAN", lab.logs)
        qg.assert_all_answered(c.ping(GUEST_IP, count=5), 5, "C -> guest over VXLAN", lab.logs)
    finally:
        stop(wire)
    decoded = read_capture(lab.path("underlay.pcap"))
    # RFC 7348 framing as tcpdump decodes it: UDP to 4789, the I flag, the VNI; Ferry's
    # source ports from the dynamic range (hashed from the inner flow).
    ferry_sent = re.findall(rf"{re.escape(A_UNDERLAY)}\.(\d+) > {re.escape(B_UNDERLAY)}\.4789: "
                            rf"VXLAN, flags \[I\] \(0x08\), vni {VNI}", decoded)
    assert ferry_sent and all(int(port) >= 49152 for port in ferry_sent), decoded[-3000:]
    assert re.search(rf"{re.escape(B_UNDERLAY)}\.\d+ > {re.escape(A_UNDERLAY)}\.4789: "
                     rf"VXLAN, flags \[I\] \(0x08\), vni {VNI}", decoded), decoded[-3000:]
    # And a zero UDP checksum over IPv4, read from the capture itself.
    checksums = udp_checksums(lab.path("underlay.pcap"), source=A_UNDERLAY, port=4789)
    assert checksums and set(checksums) == {0}, checksums

    # Ferry learned C's MAC behind the Linux VTEP.
    c_mac = c.mac("c0")
    entries = ferry.ctl("show", "fdb")["fdb"]
    behind = [e for e in entries if e["mac"] == c_mac]
    assert behind and behind[0]["port"] == "vx" and behind[0]["vtep"] == B_UNDERLAY, entries
    assert any(e["mac"] == GUEST_MAC and e["port"] == "vm" and "vtep" not in e for e in entries), entries

    # Unknown unicast: a generator's frames to a MAC nobody has reach C by head-end replication.
    assert_unknown_unicast_reaches(lab, ferry, c, "g")

    vteps = ferry.ctl("show", "vteps")["vteps"]
    assert [(v["port"], v["vni"], v["address"], v["flood"]) for v in vteps] == [("vx", VNI, B_UNDERLAY, True)]
    assert vteps[0]["rx_packets"] >= 10 and vteps[0]["tx_packets"] >= 15, vteps
    assert_no_drops_but_full_buffers(ferry.port("vx"))
    table = ferry.ctl_text("show", "vteps")
    assert B_UNDERLAY in table and "yes" in table, table


def assert_unknown_unicast_reaches(lab, ferry, c, port_name: str):
    """A `gen:` port added as `port_name` sends 5 frames to a MAC nobody has: C sees them all."""
    seen = capture(c, "c0", ["ether", "src", GEN_SOURCE], lab.path("c.pcap"))
    try:
        h.ferry_ctl(ferry.control, "port", "add",
                    f"gen:dst={UNKNOWN_MAC},src={GEN_SOURCE},size=64,count=5,name={port_name}", binary=ferry.binary)
        h.wait_until(lambda: read_capture(lab.path("c.pcap")).count(GEN_SOURCE) >= 5, 10,
                     "5 unknown-unicast frames at C")
    finally:
        stop(seen)


def assert_no_drops_but_full_buffers(port: dict):
    """Nothing dropped on a vxlan port but for a full socket buffer on a loaded machine."""
    drops = {reason: n for reason, n in port["drops"].items() if reason != "tx_full"}
    assert not drops, f"the vxlan port dropped frames: {drops}"


def test_ferry_sends_through_its_xdp_uplink_to_a_linux_bridge(lab, underlay, namespaces, ferry_binary):
    a, router, b = underlay
    c, g = namespaces("vxc"), namespaces("vxg")
    linux_vtep_host(b, c)
    uplink = f"vxra{os.getpid() % 10000}"
    tap = f"vxtx{os.getpid() % 10000}"
    ferry = lab.ferry([f"tap:{tap},name=g", f"xdp:{uplink},name=up,vlan=4094",
                       f"vxlan:{VNI},local={A_UNDERLAY},remote={B_UNDERLAY},via=up,name=vx"], netns=a.name)
    g.adopt(tap, source=a)
    g.ip("addr", "add", f"{GUEST_IP}/24", "dev", tap)
    # Ferry has A's kernel resolve the router's MAC (one datagram through it), then reads it.
    h.wait_until(lambda: "via up: 1 resolved" in ferry.port("vx")["state"], 10,
                 "the Linux VTEP's next hop resolved")
    a_mac, router_mac = a.mac(uplink), router.mac(router_side(router, "ra"))
    sent_before = ferry.port("up")["tx_packets"]
    wire = capture(router, router_side(router, "ra"), ["udp", "port", "4789"], lab.path("underlay.pcap"))
    try:
        qg.assert_all_answered(g.ping(C_IP, count=5), 5, "station -> C over VXLAN via the xdp uplink", lab.logs)
        qg.assert_all_answered(c.ping(GUEST_IP, count=5), 5, "C -> station over VXLAN", lab.logs)
    finally:
        stop(wire)
    decoded = read_capture(lab.path("underlay.pcap"))
    ferry_sent = re.findall(rf"{re.escape(a_mac)} > {re.escape(router_mac)}, ethertype IPv4 .*\n\s+"
                            rf"{re.escape(A_UNDERLAY)}\.(\d+) > {re.escape(B_UNDERLAY)}\.4789: "
                            rf"VXLAN, flags \[I\] \(0x08\), vni {VNI}", decoded)
    assert len(ferry_sent) >= 5 and all(int(port) >= 49152 for port in ferry_sent), decoded[-3000:]
    checksums = udp_checksums(lab.path("underlay.pcap"), source=A_UNDERLAY, port=4789)
    assert checksums and set(checksums) == {0}, checksums
    assert "bad cksum" not in decoded, decoded[-3000:]
    assert ferry.port("up")["tx_packets"] - sent_before >= 10, ferry.port("up")
    # B's datagrams came in through the uplink's AF_XDP socket (the vxlan port's queue 1), none
    # through the kernel's UDP socket (queue 0): the steering program redirected them.
    queues = {q["queue"]: q for q in ferry.port("vx")["queues"]}
    assert queues[1]["rx_packets"] >= 5 and queues[0]["rx_packets"] == 0, queues

    c_mac = c.mac("c0")
    entries = ferry.ctl("show", "fdb")["fdb"]
    behind = [e for e in entries if e["mac"] == c_mac]
    assert behind and behind[0]["port"] == "vx" and behind[0]["vtep"] == B_UNDERLAY, entries

    assert_unknown_unicast_reaches(lab, ferry, c, "gen")
    assert_no_drops_but_full_buffers(ferry.port("vx"))


A6_UNDERLAY, B6_UNDERLAY = "fd00:18:1::1", "fd00:18:2::1"


@pytest.fixture
def underlay6(namespaces):
    """Hosts A and B, one routed IPv6 hop apart through a router namespace."""
    return routed_underlay(namespaces, A6_UNDERLAY, B6_UNDERLAY)


@pytest.mark.parametrize("path", ["socket", "xdp"])
def test_an_ipv6_underlay_reaches_a_linux_bridge(lab, underlay6, namespaces, ferry_binary, path):
    a, router, b = underlay6
    c, g = namespaces("vxc"), namespaces("vxg")
    linux_vtep_host(b, c, local=B6_UNDERLAY, remote=A6_UNDERLAY)
    uplink = f"vxra{os.getpid() % 10000}"
    tap = f"vxt6{os.getpid() % 10000}"
    vxlan = f"vxlan:{VNI},local={A6_UNDERLAY},remote={B6_UNDERLAY},name=vx"
    ports = [f"tap:{tap},name=g", vxlan]
    if path == "xdp":
        ports = [f"tap:{tap},name=g", f"xdp:{uplink},name=up,vlan=4094", vxlan + ",via=up"]
    ferry = lab.ferry(ports, netns=a.name)
    g.adopt(tap, source=a)
    g.ip("addr", "add", f"{GUEST_IP}/24", "dev", tap)
    if path == "xdp":
        h.wait_until(lambda: "via up: 1 resolved" in ferry.port("vx")["state"], 10,
                     "the Linux VTEP's IPv6 next hop resolved")
    wire = capture(router, router_side(router, "rb"), ["udp", "port", "4789"], lab.path("underlay.pcap"))
    try:
        qg.assert_all_answered(g.ping(C_IP, count=5), 5, f"station -> C over VXLAN/IPv6 ({path})", lab.logs)
        qg.assert_all_answered(c.ping(GUEST_IP, count=5), 5, f"C -> station over VXLAN/IPv6 ({path})", lab.logs)
    finally:
        stop(wire)
    decoded = read_capture(lab.path("underlay.pcap"))
    # tcpdump checks IPv6 UDP checksums. A kernel's are left unfinished (the pseudo-header's
    # sum: the veth's checksum offload), which tcpdump calls bad and the kernel and Ferry take as
    # a local sender's partial checksum: B's, and Ferry's through its sockets. Through the
    # uplink Ferry writes whole frames, their checksums finished by itself.
    framing = r"\.(\d+) > {}\.4789: {}VXLAN, flags \[I\] \(0x08\), vni {}"
    any_checksum = r"(?:\[[^]]*\] )?"
    ferry_checksum = r"\[udp sum ok\] " if path == "xdp" else any_checksum
    ferry_sent = re.findall(re.escape(A6_UNDERLAY) + framing.format(re.escape(B6_UNDERLAY), ferry_checksum, VNI),
                            decoded)
    assert len(ferry_sent) >= 5 and all(int(port) >= 49152 for port in ferry_sent), \
        "\n".join(line for line in decoded.splitlines() if f"{A6_UNDERLAY}." in line)[-3000:]
    assert re.search(re.escape(B6_UNDERLAY) + framing.format(re.escape(A6_UNDERLAY), any_checksum, VNI),
                     decoded), decoded[-3000:]

    entries = ferry.ctl("show", "fdb")["fdb"]
    behind = [e for e in entries if e["mac"] == c.mac("c0")]
    assert behind and behind[0]["port"] == "vx" and behind[0]["vtep"] == B6_UNDERLAY, entries
    vteps = ferry.ctl("show", "vteps")["vteps"]
    assert [(v["address"], v["flood"]) for v in vteps] == [(B6_UNDERLAY, True)], vteps
    assert vteps[0]["rx_packets"] >= 5 and vteps[0]["tx_packets"] >= 5, vteps
    queues = {q["queue"]: q for q in ferry.port("vx")["queues"]}
    if path == "xdp":
        # B's datagrams came through the uplink's AF_XDP socket, their checksums verified there.
        assert queues[1]["rx_packets"] >= 5 and queues[0]["rx_packets"] == 0, queues
    else:
        assert queues[0]["rx_packets"] >= 5, queues
    assert_no_drops_but_full_buffers(ferry.port("vx"))


def ferry_host(lab, host, guest_ns, local: str, remote: str, tag: str):
    """Ferry in `host` with a TAP (moved into `guest_ns`) and a vxlan port."""
    tap = f"vxt{tag}{os.getpid() % 10000}"
    ferry = lab.ferry([f"tap:{tap},name=g", f"vxlan:{VNI},local={local},remote={remote},name=vx"],
                      control=lab.path(f"ctl-{tag}.sock"), netns=host.name)
    guest_ns.adopt(tap, source=host)
    return ferry, tap


def test_two_ferry_hosts_carry_ping_and_tcp(lab, underlay, namespaces, ferry_binary, tmp_path):
    a, _, b = underlay
    ga, gb = namespaces("vxga"), namespaces("vxgb")
    ferry_a, tap_a = ferry_host(lab, a, ga, A_UNDERLAY, B_UNDERLAY, "a")
    ferry_b, tap_b = ferry_host(lab, b, gb, B_UNDERLAY, A_UNDERLAY, "b")
    ga.ip("addr", "add", f"{GUEST_IP}/24", "dev", tap_a)
    gb.ip("addr", "add", f"{C_IP}/24", "dev", tap_b)

    qg.assert_all_answered(ga.ping(C_IP, count=5), 5, "guest A -> guest B", lab.logs)
    qg.assert_all_answered(gb.ping(GUEST_IP, count=5), 5, "guest B -> guest A", lab.logs)

    payload = str(tmp_path / "payload")
    data = os.urandom(16 << 20)
    with open(payload, "wb") as f:
        f.write(data)
    digest = hashlib.sha256(data).hexdigest()
    receiver = subprocess.Popen(["ip", "netns", "exec", gb.name, sys.executable, "-c", RECEIVER, C_IP, "5201"],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout.readline().strip() == "listening"
        sent = ga.exec([sys.executable, "-c", SENDER, C_IP, "5201", payload], timeout=120, check=False)
        assert sent.returncode == 0, sent.stderr + lab.logs()
        out, _ = receiver.communicate(timeout=120)
        count, got = out.split()
        assert int(count) == len(data) and got == digest, "the bytes that arrived differ from those sent"
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()

    # A sent the data (16 MiB: over 11,000 segments), B the acknowledgements.
    for ferry, peer, least in ((ferry_a, B_UNDERLAY, 11_000), (ferry_b, A_UNDERLAY, 100)):
        assert_no_drops_but_full_buffers(ferry.port("vx"))
        vteps = ferry.ctl("show", "vteps")["vteps"]
        assert vteps[0]["address"] == peer and vteps[0]["tx_packets"] > least, vteps
    # The TAP handed over super-frames; Ferry cut them for the tunnel, whose datagrams are MTU-sized.
    assert ferry_a.port("vx")["offloads"].get("segmented_frames", 0) > 0, ferry_a.port("vx")
