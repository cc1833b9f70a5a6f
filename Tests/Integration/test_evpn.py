"""BGP EVPN through FRR: two Ferry hosts and a Linux bridge host share VNI 100, and every remote
MAC and every flood list comes from EVPN routes, none from learning.

Run as root from the repository root, after `swift build -c release`:

    python3 -m pytest -v Tests/Integration/test_evpn.py

Three "hosts" (namespaces) one routed hop apart through a router namespace (198.18.1.1,
198.18.2.1, 198.18.3.1), each running FRR's zebra and bgpd as Debian ships them, with iBGP
EVPN sessions in a full mesh, configured as docs/MULTIHOST.md shows (the block marked
`tested: evpn-frr-conf`, a neighbor line per peer):

* hosts A and B run Ferry with a TAP port (its host in a namespace of its own) and
  `vxlan:100,local=...,evpn=vxk100,evpn_port=fe100`: the kernel bridge br100 holds the vxlan
  device vxk100 (VNI 100, `nolearning`, on UDP 47890, which nothing sends to) and the veth
  fe100, where Ferry writes its local MACs for zebra; zebra installs what BGP learned on
  vxk100, and Ferry takes it from there. Learning is off on the vxlan ports.
* host L is plain Linux: br100 with vx100 (VNI 100, UDP 4789, `nolearning`) and a veth to a
  host namespace.

The test checks that the three hosts reach each other; that `vtysh -c 'show bgp l2vpn evpn
route'` on L lists A's and B's host MACs as type-2 routes and both Ferry VTEPs' type-3
routes; that each Ferry's forwarding database has the remote MACs as EVPN entries behind the
right VTEP and floods to both other VTEPs; that the kernel vxlan devices on the Ferry hosts
carried no datagram; that nonsense installed on vxk100 (a group MAC, a MAC of another
VNI) is refused and logged, not used; and that A's host, moved to B (its port removed on A,
a TAP with the same MAC and address added on B), answers L again within 5 s.

Takes about 30 s (BGP sessions come up within a few seconds: connect retry 1 s).
Every namespace, daemon and veth goes at the end, also on failure.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import textwrap
import time

import pytest

import harness as h
import qemu_guest as qg

VNI = 100
UNDERLAY_MTU = 1600
KERNEL_VXLAN_PORT = "47890"
FRR = "/usr/lib/frr"
HOSTS = {"a": "198.18.1.1", "b": "198.18.2.1", "l": "198.18.3.1"}
OVERLAY = {"a": "198.18.100.1", "b": "198.18.100.2", "l": "198.18.100.3"}
MACS = {"a": "02:00:00:18:64:01", "b": "02:00:00:18:64:02", "l": "02:00:00:18:64:03"}
# The addresses docs/MULTIHOST.md's FRR configuration names: its host A, and A's peer L.
DOC_ROUTER_ID, DOC_PEER = "198.18.1.1", "198.18.3.1"


def tool_problems() -> list[str]:
    problems = [] if os.geteuid() == 0 else ["not root: namespaces, veths and raw sockets need root"]
    problems += [f"{tool} not found: tools/install-deps.sh test installs it"
                 for tool in ("ip", "bridge", "busybox", "vtysh") if not shutil.which(tool)]
    problems += [f"{FRR}/{daemon} not found: tools/install-deps.sh test installs frr"
                 for daemon in ("zebra", "bgpd") if not os.access(f"{FRR}/{daemon}", os.X_OK)]
    try:
        pwd.getpwnam("frr")
    except KeyError:
        problems.append("no user frr (the frr package makes it): tools/install-deps.sh test installs frr")
    return problems


def documented_frr_config(router_id: str, peers: list[str]) -> str:
    """docs/MULTIHOST.md's FRR configuration (host A's, whose peer is L), for the host `router_id`
    with a neighbor line for each of `peers`."""
    text = (h.REPO / "docs" / "MULTIHOST.md").read_text()
    m = re.search(r"<!-- tested: evpn-frr-conf -->\s*```\n(.*?)```", text, re.S)
    assert m, "docs/MULTIHOST.md has no block marked <!-- tested: evpn-frr-conf -->"
    lines = []
    for line in textwrap.dedent(m.group(1)).splitlines():
        if DOC_PEER in line:
            lines += [line.replace(DOC_PEER, peer) for peer in peers]
        else:
            lines.append(line.replace(DOC_ROUTER_ID, router_id))
    return "\n".join(lines) + "\n"


class FRRHost:
    """zebra and bgpd in one namespace, with their own config, sockets and logs in `state`."""

    def __init__(self, ns, state: str, router_id: str, peers: list[str]):
        self.ns, self.state = ns, state
        os.makedirs(state, exist_ok=True)
        # The daemons run as frr: they pass through the test's private directory into their own.
        os.chmod(os.path.dirname(state), 0o711)
        frr = pwd.getpwnam("frr")
        os.chown(state, frr.pw_uid, frr.pw_gid)
        with open(f"{state}/bgpd.conf", "w") as f:
            f.write(documented_frr_config(router_id, peers))
        open(f"{state}/zebra.conf", "w").close()
        self.procs: list[subprocess.Popen] = []
        for daemon in ("zebra", "bgpd"):
            self.procs.append(ns.popen([f"{FRR}/{daemon}", "-u", "frr", "-g", "frr", "-f", f"{state}/{daemon}.conf",
                                        "-i", f"{state}/{daemon}.pid", "-z", f"{state}/zserv.api",
                                        "--vty_socket", state, "-P", "0", "--log", f"file:{state}/{daemon}.log"],
                                       f"{state}/{daemon}.out"))
            # bgpd connects to zebra's socket; it retries, but a second is quicker than its backoff.
            h.wait_until(lambda: os.path.exists(f"{state}/{daemon}.vty"), 15, f"{daemon} in {ns.name}")

    def vtysh(self, command: str) -> str:
        res = subprocess.run(["vtysh", "--vty_socket", self.state, "-c", command], capture_output=True, text=True,
                             timeout=15)
        assert res.returncode == 0, f"vtysh -c '{command}': {res.stderr}"
        return res.stdout

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def logs(self) -> str:
        text = []
        for name in ("zebra.log", "bgpd.log", "zebra.out", "bgpd.out"):
            try:
                with open(f"{self.state}/{name}", errors="replace") as f:
                    text.append(f"--- {name} ---\n" + "\n".join(f.read().splitlines()[-15:]))
            except OSError:
                pass
        return "\n".join(text)


def link(ns_a, name_a: str, ns_b, name_b: str, mtu: int = 1500):
    qg.run(["ip", "link", "add", name_a, "netns", ns_a.name, "mtu", str(mtu), "type", "veth",
            "peer", "name", name_b, "netns", ns_b.name, "mtu", str(mtu)])


def overlay_host(ns, interface: str, tag: str):
    ns.ip("link", "set", interface, "address", MACS[tag])
    ns.ip("addr", "add", f"{OVERLAY[tag]}/24", "dev", interface)
    ns.ip("link", "set", interface, "up")


@pytest.fixture
def fabric(lab, namespaces):
    """The router, the three hosts with their kernel devices, L's host, FRR on each: (hosts, L's host, frr)."""
    problems = tool_problems()
    if problems:
        pytest.fail("cannot run the EVPN test:\n  " + "\n  ".join(problems), pytrace=False)
    router = namespaces("evr")
    router.sysctl("net.ipv4.ip_forward", "1")
    hosts = {tag: namespaces(f"ev{tag}") for tag in HOSTS}
    behind_l = namespaces("evhl")
    for tag, address in HOSTS.items():
        host, gateway = hosts[tag], address.rsplit(".", 1)[0] + ".254"
        link(host, "under", router, f"to{tag}", UNDERLAY_MTU)
        host.ip("addr", "add", f"{address}/24", "dev", "under")
        host.ip("link", "set", "under", "up")
        # Not a default route: zebra does not resolve a BGP peer through one (unless told
        # `ip nht resolve-via-default`), and bgpd never connects to an unresolved peer.
        host.ip("route", "add", "198.18.0.0/16", "via", gateway)
        router.ip("addr", "add", f"{gateway}/24", "dev", f"to{tag}")
        router.ip("link", "set", f"to{tag}", "up")
        host.ip("link", "add", "br100", "type", "bridge")
        if tag == "l":
            host.ip("link", "add", "vx100", "type", "vxlan", "id", str(VNI), "local", address, "dstport", "4789",
                    "nolearning")
            bridge_ports = ["vx100", "hostl"]
            link(host, "hostl", behind_l, "eth0")
            overlay_host(behind_l, "eth0", "l")
        else:
            # Zebra's meeting point: never carries Ferry's traffic (another UDP port, nothing in the bridge sends).
            host.ip("link", "add", "vxk100", "type", "vxlan", "id", str(VNI), "local", address,
                    "dstport", KERNEL_VXLAN_PORT, "nolearning")
            host.ip("link", "add", "fe100", "type", "veth", "peer", "name", "fe100p")
            host.ip("link", "set", "fe100p", "up")
            bridge_ports = ["vxk100", "fe100"]
        for port in bridge_ports:
            host.ip("link", "set", port, "master", "br100")
            host.ip("link", "set", port, "up")
        host.ip("link", "set", "br100", "up")
    frr = {}
    try:
        for tag, address in HOSTS.items():
            peers = [other for other in HOSTS.values() if other != address]
            frr[tag] = FRRHost(hosts[tag], lab.path(f"frr-{tag}"), address, peers)
        yield hosts, behind_l, frr
    finally:
        for daemons in frr.values():
            daemons.stop()


def ferry_host(lab, host, tag: str, tap: str, host_ns):
    """Ferry on Ferry host `tag` with its overlay host on a TAP moved into `host_ns`."""
    ferry = lab.ferry([f"tap:{tap},name=host",
                       f"vxlan:{VNI},local={HOSTS[tag]},evpn=vxk100,evpn_port=fe100,name=vx"],
                      control=lab.path(f"ctl-{tag}.sock"), netns=host.name)
    host_ns.adopt(tap, source=host)
    overlay_host(host_ns, tap, tag)
    return ferry


def routes(frr: FRRHost) -> str:
    return frr.vtysh("show bgp l2vpn evpn route")


def type2(mac: str) -> str:
    return f"[2]:[0]:[48]:[{mac}]"


def type3(vtep: str) -> str:
    return f"[3]:[0]:[32]:[{vtep}]"


def next_hop_of(table: str, prefix: str) -> list[str]:
    """The next hops of `prefix`'s paths in a `show bgp l2vpn evpn route` table."""
    lines = table.splitlines()
    hops = []
    for i, line in enumerate(lines):
        if prefix in line and i + 1 < len(lines):
            hops += re.findall(r"\d+\.\d+\.\d+\.\d+", lines[i + 1])[:1]
    return hops


def evpn_entries(ferry) -> dict[str, tuple[str, bool]]:
    """The vxlan port's entries in Ferry's forwarding database: MAC -> (VTEP, marked EVPN)."""
    return {e["mac"]: (e.get("vtep"), e.get("evpn", False)) for e in ferry.ctl("show", "fdb")["fdb"]
            if e["port"] == "vx"}


def answered(ns, target: str) -> bool:
    _, received, _ = ns.ping(target, count=1, wait=1)
    return received == 1


def test_evpn_carries_every_remote_mac_and_flood_list(lab, fabric, namespaces):
    hosts, behind_l, frr = fabric
    pid = os.getpid() % 10000
    behind = {"a": namespaces("evha"), "b": namespaces("evhb")}
    ferries = {tag: ferry_host(lab, hosts[tag], tag, f"evt{tag}{pid}", behind[tag]) for tag in ("a", "b")}
    logs = lambda: lab.logs() + "\n" + "\n".join(daemons.logs() for daemons in frr.values())

    # Each VTEP's type-3 route reaches L once the sessions are up: zebra advertises the VNI itself.
    try:
        h.wait_until(lambda: all(type3(HOSTS[t]) in routes(frr["l"]) for t in ("a", "b")), 30,
                     "type-3 routes of both Ferry VTEPs at L")
    except TimeoutError as error:
        state = "\n".join(f"--- {tag} ---\n" + daemons.vtysh("show bgp l2vpn evpn summary")
                          + daemons.vtysh("show evpn vni") + routes(daemons) for tag, daemons in frr.items())
        raise AssertionError(f"{error}\n{state}\n{logs()}") from None
    for ferry in ferries.values():
        h.wait_until(lambda: sum(v["flood"] for v in ferry.ctl("show", "vteps")["vteps"]) == 2, 20,
                     "both other VTEPs in a Ferry port's flood list")

    # The hosts find each other: ARP floods by the type-3 lists, the answers follow type-2 routes.
    for source, target in (("a", "l"), ("b", "l"), ("a", "b")):
        source_ns = behind_l if source == "l" else behind[source]
        h.wait_until(lambda: answered(source_ns, OVERLAY[target]), 20, f"host {source} -> host {target}", interval=0.5)
    qg.assert_all_answered(behind_l.ping(OVERLAY["a"], count=3), 3, "L's host -> A's host", logs)
    qg.assert_all_answered(behind_l.ping(OVERLAY["b"], count=3), 3, "L's host -> B's host", logs)

    table = h.wait_until(lambda: (lambda t: t if type2(MACS["a"]) in t and type2(MACS["b"]) in t else None)(
        routes(frr["l"])), 10, "type-2 routes of the Ferry hosts' MACs at L")
    assert next_hop_of(table, type2(MACS["a"])) == [HOSTS["a"]], table
    assert next_hop_of(table, type2(MACS["b"])) == [HOSTS["b"]], table
    for tag in ("a", "b"):
        assert type3(HOSTS[tag]) in table, table

    # Ferry's side: every remote MAC is an EVPN entry behind its VTEP, nothing learned on the port.
    entries_a = h.wait_until(lambda: (lambda e: e if MACS["b"] in e and MACS["l"] in e else None)(
        evpn_entries(ferries["a"])), 10, "B's and L's hosts in A's table")
    assert entries_a[MACS["b"]] == (HOSTS["b"], True), entries_a
    assert entries_a[MACS["l"]] == (HOSTS["l"], True), entries_a
    assert all(evpn for _, evpn in entries_a.values()), f"an entry learned on the vxlan port: {entries_a}"
    vteps = {v["address"]: v["flood"] for v in ferries["a"].ctl("show", "vteps")["vteps"]}
    assert vteps == {HOSTS["b"]: True, HOSTS["l"]: True}, vteps
    assert "evpn" in ferries["a"].ctl_text("show", "fdb")

    # The kernel's own vxlan devices on the Ferry hosts never carried a datagram.
    for tag in ("a", "b"):
        stats = hosts[tag].ip("-s", "-j", "link", "show", "vxk100").stdout
        counts = re.findall(r'"(rx|tx)":\{"bytes":\d+,"packets":(\d+)', stats)
        assert counts and all(int(n) == 0 for _, n in counts), stats

    # Nonsense on vxk100 is refused and logged, never used: a group MAC, another VNI's MAC.
    hosts["a"].exec(["bridge", "fdb", "add", "01:00:5e:00:00:09", "dev", "vxk100", "dst", "198.18.3.9", "self"])
    hosts["a"].exec(["bridge", "fdb", "add", "02:00:00:18:64:99", "dev", "vxk100", "dst", "198.18.3.9", "vni", "200",
                     "self"])
    h.wait_until(lambda: ferries["a"].log_text().count("EVPN: refused from the kernel") >= 2, 10,
                 "two refusals in A's log")
    entries_a = evpn_entries(ferries["a"])
    assert "01:00:5e:00:00:09" not in entries_a and "02:00:00:18:64:99" not in entries_a, entries_a

    # A's host moves to B: its port goes on A (its MAC leaves A's bridge: zebra withdraws), a TAP
    # with the same MAC and address comes on B. L's host reaches it again within 5 s.
    started = time.monotonic()
    ferries["a"].ctl("port", "del", "host")
    moved = namespaces("evhm")
    tap = f"evtm{pid}"
    h.ferry_ctl(ferries["b"].control, "port", "add", f"tap:{tap},name=moved", binary=ferries["b"].binary)
    moved.adopt(tap, source=hosts["b"])
    overlay_host(moved, tap, "a")
    h.wait_until(lambda: answered(behind_l, OVERLAY["a"]), 5, "A's host, moved to B, from L's host", interval=0.1)
    took = time.monotonic() - started
    print(f"reachable again {took:.1f} s after its port was removed on A")
    assert took <= 5, f"the moved host took {took:.1f} s to answer"

    table = h.wait_until(lambda: (lambda t: t if next_hop_of(t, type2(MACS["a"])) == [HOSTS["b"]] else None)(
        routes(frr["l"])), 10, "A's host's MAC advertised from B")
    h.wait_until(lambda: evpn_entries(ferries["a"]).get(MACS["a"]) == (HOSTS["b"], True), 10,
                 "A's Ferry: its old host behind B's VTEP")
    qg.assert_all_answered(behind["b"].ping(OVERLAY["a"], count=3), 3, "B's host -> the moved host", logs)
