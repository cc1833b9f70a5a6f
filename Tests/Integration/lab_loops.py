"""Devices under test that loop a lab's frames back, shared by test_lab.py and tools/bench-lab.py.

A loop through something other than a guest keeps its two sides apart by addresses: frames go
out to LOOP_MAC (static at the loop's port) and come back from the loop to GEN_SRC (static at
the sink), so that frames going out reach only the loop and frames coming back only the sink.
"""

from __future__ import annotations

GEN_SRC = "02:00:00:00:00:01"   # the generator's source: static at the sink
LOOP_MAC = "02:00:00:00:00:02"  # the loop's address: static at the loop's port


def kernel_loop(ns, tap: str, shaper: str | None = None) -> None:
    """A TAP in namespace `ns` whose kernel forwards the generator's frames back to the sink's
    address, through `shaper` (a tbf qdisc's parameters) on the way out when given. A TAP that
    exists before Ferry opens it stays in the namespace it was made in."""
    ns.ip("tuntap", "add", "dev", tap, "mode", "tap")
    ns.ip("link", "set", tap, "address", LOOP_MAC, "up")
    ns.ip("addr", "add", "198.18.255.254/15", "dev", tap)
    ns.ip("neigh", "replace", "198.19.0.1", "lladdr", GEN_SRC, "nud", "permanent", "dev", tap)
    for key in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0",
                f"net.ipv4.conf.{tap}.send_redirects=0", "net.ipv4.conf.all.rp_filter=0",
                f"net.ipv4.conf.{tap}.rp_filter=0"):
        ns.sysctl(*key.split("="))
    if shaper:
        ns.exec(["tc", "qdisc", "add", "dev", tap, "root", "tbf", *shaper.split()])
