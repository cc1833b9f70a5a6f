"""A tiny IPv4 host on 802.1Q-tagged VLANs, over a packet socket (run it inside a namespace).

Kernels without 802.1Q support (CONFIG_VLAN_8021Q unset, as on some CI VMs) cannot make
TAP.10 / TAP.20 subinterfaces, so the trunk test gives the namespace its VLAN addresses here:

    vlan_host.py serve IFACE VLAN=ADDR [VLAN=ADDR ...]
        answers ARP requests for each ADDR and ICMP echo requests to it, on VLAN (frames tagged
        VLAN, source MAC = IFACE's); prints "serving" once the socket is bound
    vlan_host.py ping IFACE VLAN SRC DST COUNT
        resolves DST with a tagged broadcast ARP request, then sends COUNT echo requests 0.1 s
        apart and prints one JSON line {"arp": MAC|null, "transmitted": N, "received": N}

The kernel takes the tag out of a received frame before packet sockets see it (it is in
PACKET_AUXDATA); a frame still carrying an inline tag is understood as well. Frames are sent
with the tag inline. Python 3 stdlib only.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import sys
import time

ETH_P_ALL, ETH_P_IP, ETH_P_ARP, ETH_P_8021Q = 0x0003, 0x0800, 0x0806, 0x8100
SOL_PACKET, PACKET_AUXDATA = 263, 8                  # <linux/if_packet.h>
TP_STATUS_VLAN_VALID = 1 << 4
PACKET_OUTGOING = 4
BROADCAST = b"\xff" * 6


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def mac_of(iface: str) -> bytes:
    with open(f"/sys/class/net/{iface}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def open_socket(iface: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    s.bind((iface, ETH_P_ALL))
    return s


def receive(s: socket.socket, timeout: float):
    """(vlan or None, dst, src, ethertype, payload) of the next incoming frame, or None."""
    if not select.select([s], [], [], max(timeout, 0))[0]:
        return None
    data, anc, _flags, addr = s.recvmsg(65535, socket.CMSG_SPACE(32))
    if addr[2] == PACKET_OUTGOING:
        return ()
    vlan = None
    for level, kind, cdata in anc:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(cdata) >= 20:
            status, _len, _snap, _mac, _net, tci = struct.unpack_from("=IIIHHH", cdata)
            if status & TP_STATUS_VLAN_VALID:
                vlan = tci & 0x0FFF
    dst, src, etype = data[0:6], data[6:12], struct.unpack_from("!H", data, 12)[0]
    payload = data[14:]
    if etype == ETH_P_8021Q and len(payload) >= 4:   # the tag is still in the frame
        vlan = struct.unpack_from("!H", payload, 0)[0] & 0x0FFF
        etype = struct.unpack_from("!H", payload, 2)[0]
        payload = payload[4:]
    return vlan, dst, src, etype, payload


def send(s: socket.socket, vlan: int, dst: bytes, src: bytes, etype: int, payload: bytes):
    frame = dst + src + struct.pack("!HHH", ETH_P_8021Q, vlan, etype) + payload
    s.send(frame.ljust(64, b"\0"))   # 60 bytes + the 4-byte tag: the minimum tagged frame


def arp(op: int, smac: bytes, sip: bytes, tmac: bytes, tip: bytes) -> bytes:
    return struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, op, smac, sip, tmac, tip)


def icmp_echo(kind: int, ident: int, seq: int, body: bytes) -> bytes:
    head = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    return head[:2] + struct.pack("!H", checksum(head + body)) + head[4:] + body


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0,
                       src, dst)
    return head[:10] + struct.pack("!H", checksum(head)) + head[12:] + payload


def serve(iface: str, pairs: list[str]):
    me = mac_of(iface)
    addrs = {}
    for p in pairs:
        vlan, _, addr = p.partition("=")
        addrs[(int(vlan), socket.inet_aton(addr))] = True
    s = open_socket(iface)
    print("serving", flush=True)
    while True:
        got = receive(s, 1.0)
        if not got:
            continue
        vlan, _dst, src, etype, payload = got
        if vlan is None:
            continue
        if etype == ETH_P_ARP and len(payload) >= 28:
            _, _, _, _, op, smac, sip, _tmac, tip = struct.unpack_from("!HHBBH6s4s6s4s",
                                                                       payload)
            if op == 1 and (vlan, tip) in addrs:
                send(s, vlan, src, me, ETH_P_ARP, arp(2, me, tip, smac, sip))
        elif etype == ETH_P_IP and len(payload) >= 28 and payload[9] == 1:
            ihl = (payload[0] & 0x0F) * 4
            total = struct.unpack_from("!H", payload, 2)[0]
            sip, dip = payload[12:16], payload[16:20]
            icmp = payload[ihl:total]
            if (vlan, dip) in addrs and len(icmp) >= 8 and icmp[0] == 8:
                ident, seq = struct.unpack_from("!HH", icmp, 4)
                reply = ipv4(dip, sip, 1, icmp_echo(0, ident, seq, icmp[8:]))
                send(s, vlan, src, me, ETH_P_IP, reply)


def ping(iface: str, vlan: int, src: str, dst: str, count: int):
    me, sip, dip = mac_of(iface), socket.inet_aton(src), socket.inet_aton(dst)
    s = open_socket(iface)
    peer = None
    for _attempt in range(3):
        send(s, vlan, BROADCAST, me, ETH_P_ARP, arp(1, me, sip, b"\0" * 6, dip))
        deadline = time.monotonic() + 1.0
        while peer is None and time.monotonic() < deadline:
            got = receive(s, deadline - time.monotonic())
            if got and got[0] == vlan and got[3] == ETH_P_ARP and len(got[4]) >= 28:
                _, _, _, _, op, smac, rip, _t, _ = struct.unpack_from("!HHBBH6s4s6s4s", got[4])
                if op == 2 and rip == dip:
                    peer = smac
        if peer:
            break
    result = {"arp": peer.hex(":") if peer else None, "transmitted": 0, "received": 0}
    if peer:
        ident, answered = os.getpid() & 0xFFFF, set()
        for seq in range(count):
            send(s, vlan, peer, me, ETH_P_IP,
                 ipv4(sip, dip, 1, icmp_echo(8, ident, seq, b"ferry-vlan-host" * 3)))
            result["transmitted"] += 1
            deadline = time.monotonic() + (0.1 if seq < count - 1 else 1.0)
            while time.monotonic() < deadline:
                got = receive(s, deadline - time.monotonic())
                if not got or got[0] != vlan or got[3] != ETH_P_IP:
                    continue
                p = got[4]
                ihl = (p[0] & 0x0F) * 4
                if p[9] == 1 and p[12:16] == dip and len(p) >= ihl + 8 and p[ihl] == 0:
                    rid, rseq = struct.unpack_from("!HH", p, ihl + 4)
                    if rid == ident:
                        answered.add(rseq)
                if len(answered) == count:
                    break
        result["received"] = len(answered)
    print(json.dumps(result), flush=True)


def main(argv: list[str]):
    if len(argv) >= 3 and argv[0] == "serve":
        serve(argv[1], argv[2:])
    elif len(argv) == 6 and argv[0] == "ping":
        ping(argv[1], int(argv[2]), argv[3], argv[4], int(argv[5]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
